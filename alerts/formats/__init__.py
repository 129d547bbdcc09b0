"""How an alert event is written for each receiver: ECS JSON, CEF, RFC 5424 syslog."""
