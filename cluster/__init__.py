"""Scans spread over Celery workers, one queue per site; results go straight to the inventory."""
