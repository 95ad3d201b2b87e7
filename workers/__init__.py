"""callqueue workers: the Celery app, its tasks and the MongoDB access they use."""
