"""Celery entry point: ``celery -A worker worker`` (and ``celery -A worker beat``)."""

from newsletter import create_app

app = create_app()
celery = app.extensions["celery"]
