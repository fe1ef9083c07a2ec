"""The Celery worker: transport only; worker/runner.py does the work."""
