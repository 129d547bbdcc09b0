"""Findings as events, and the outputs that carry them to a SOC: files, syslog, webhooks, mail."""
