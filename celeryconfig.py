"""Celery entry point: `celery -A celeryconfig worker|beat|flower`.

The configuration itself is built from IRAS settings in iras/celery_app.py.
"""

from iras.celery_app import celery_app as app

__all__ = ["app"]
