"""Derivation: stored evidence run through the role and finding rules, once per change."""
