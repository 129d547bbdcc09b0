"""Statement builders every store write shares: bulk inserts, upserts, IN lists."""
