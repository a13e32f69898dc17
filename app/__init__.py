"""Pointclear: the Flask application."""

from __future__ import annotations

from flask import Flask


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app from the environment (see :mod:`app.config`) and ``test_config``."""
    from . import api, cli, config, db, errors, health, request_id

    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(config.from_environ(app.instance_path))
    if test_config:
        app.config.update(test_config)
    db.init_app(app)
    request_id.init_app(app)
    errors.init_app(app)
    health.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    return app
