"""Celery entry point for benchmark workers: `celery -A bench.worker_app worker`.

The same application as `celeryconfig`, with the instant analyst installed in
the process before any task runs (prefork children inherit it), so the
pipeline is measured without a model's wall time.
"""

from bench._analyst import InstantAnalyst
from iras.analysts import set_analyst

set_analyst(InstantAnalyst())

from iras.celery_app import celery_app as app  # noqa: E402 - after the analyst is installed

__all__ = ["app"]
