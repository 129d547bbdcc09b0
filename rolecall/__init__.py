"""rolecall: find the hosts that send spam or proxy a botnet's traffic, by role."""

__version__ = "0.1.0"
