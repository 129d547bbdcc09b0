"""The mail-cluster view: mail grouped by one field, filtered by `--where`."""
