"""What users read: exports and reports rendered from the inventory."""
