"""WSGI entry point: `granian --interface wsgi wsgi:app` (see the Procfile)."""

from iras.logging_setup import configure_logging
from iras.web import create_app

configure_logging()
app = create_app()
