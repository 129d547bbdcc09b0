"""The asset inventory: tables, the store, role derivation, groups, findings and history."""
