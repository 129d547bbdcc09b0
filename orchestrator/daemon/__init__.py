"""`rolecall run`: the scheduler daemon, its jobs, lock, log and watched folders."""
