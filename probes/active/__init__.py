"""Active probes: what every open TCP port speaks, asked safely in bounded time."""
