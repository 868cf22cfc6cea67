"""Celery entry point for the chaos suite's workers: `celery -A tests.chaos._worker_app worker`.

The production application with the recording instant analyst installed
before any task runs (prefork children inherit it).
"""

from iras.analysts import set_analyst
from tests.chaos._analyst import RecordingAnalyst

set_analyst(RecordingAnalyst())

from iras.celery_app import celery_app as app  # noqa: E402 - after the analyst is installed

__all__ = ["app"]
