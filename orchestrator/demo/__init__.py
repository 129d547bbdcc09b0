"""`rolecall demo`: a lab on loopback, its traffic, capture, scan and report."""
