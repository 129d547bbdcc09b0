"""Passive readers: captures, Zeek logs and firewall logs turned into records."""
