"""The alert outputs, one module each; this package is their registry (see registry.py)."""
