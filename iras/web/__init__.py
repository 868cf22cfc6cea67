"""Flask application factory: blueprints for webhooks, the incident API and health.

Every error leaves as JSON with a reason (never an HTML page, never a 500 for
bad input).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from iras.config import get_settings

log = logging.getLogger(__name__)


def create_app(settings_override: dict[str, Any] | None = None) -> Flask:
    settings = get_settings()
    app = Flask(__name__)
    # Body limit: werkzeug answers 413 before the body is read into memory.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    app.config.update(settings_override or {})

    from iras.web.api import bp as api_bp
    from iras.web.health import bp as health_bp
    from iras.web.webhooks import bp as webhooks_bp

    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(health_bp)
    from iras.web.slack import bp as slack_bp

    app.register_blueprint(slack_bp)

    from iras import auth, metrics
    from iras.web.console import bp as console_bp
    from iras.web.postmortems import bp as postmortems_bp

    auth.init_app(app, settings)  # secret key, session cookie flags, AUTH_ENABLED
    metrics.init_app(app)  # /metrics and per-request counters
    app.register_blueprint(postmortems_bp)
    app.register_blueprint(console_bp)

    # Outermost: every path gets a complete body, bounded in size and time, or none.
    from iras.web.body_guard import BodyGuard

    app.wsgi_app = BodyGuard(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_payload_bytes, settings.body_read_timeout_seconds
    )

    @app.before_request
    def _refuse_nul() -> Any:
        # No text column of PostgreSQL can hold NUL: a `?service=%00` filter or a NUL in a
        # console form field was a 500 at the query. No parameter of IRAS may contain one.
        from flask import request

        from iras.web.util import error

        if any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            return error(400, "a query parameter contains a NUL character")
        if request.mimetype == "application/x-www-form-urlencoded" and request.path != "/slack/actions":
            request.get_data(cache=True)  # the form is then parsed from the cached body
            if any("\x00" in k or "\x00" in v for k, v in request.form.items(multi=True)):
                return error(400, "a form field contains a NUL character")
        return None

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.name.lower().replace(" ", "_"), reason=exc.description), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            log.error("database unavailable: %s", exc)
            return jsonify(error="service_unavailable", reason="database unavailable, retry later"), 503
        log.exception("unhandled error")
        return jsonify(error="internal_error", reason="unexpected error; it has been logged"), 500

    return app
