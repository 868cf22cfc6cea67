"""WSGI entry point: `gunicorn wsgi:app`."""

from iras.logging_setup import configure_logging
from iras.web import create_app

configure_logging()
app = create_app()
