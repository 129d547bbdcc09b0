"""Fast matchers over addresses and header text: network sets, blocklists, mailers."""
