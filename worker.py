"""Celery entry point: ``celery -A worker worker`` (and ``celery -A worker beat``)."""

from newsletter import create_app

# Not named ``app``: Celery's -A lookup would take a module attribute of that name first.
flask_app = create_app()
celery = flask_app.extensions["celery"]
