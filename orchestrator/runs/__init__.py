"""The runs behind the commands: scan, ingest, report and export, as library calls."""
