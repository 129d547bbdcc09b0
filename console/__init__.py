"""The triage console behind `rolecall serve`: findings, hosts, mail and changes on the web."""
