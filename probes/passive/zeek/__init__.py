"""Zeek's logs (TSV or JSON) read as a stream and mapped to records."""
