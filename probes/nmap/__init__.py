"""Port discovery with nmap, and nmap's XML read as a stream."""
