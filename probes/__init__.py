"""Evidence producers: active probes and passive readers that yield records and never touch the DB."""
