"""Helpers the tests share that are not tests: the SMTP server, the Celery worker, services."""
