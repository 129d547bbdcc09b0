"""Packet captures read in one streaming pass: TCP reassembled, SMTP and SOCKS parsed."""
