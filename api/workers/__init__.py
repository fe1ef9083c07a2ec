"""Workers: the Celery workers seen recently, from the heartbeats their training processes write."""
