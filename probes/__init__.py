"""Evidence producers: active probes and passive readers; they yield records, never touch the DB."""
