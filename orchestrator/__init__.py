"""The command line, configuration, scope and the jobs that drive probes into the inventory."""
