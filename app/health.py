"""``GET /health``: 200 once the database answers and is migrated to the code's head."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy.exc import SQLAlchemyError

from . import db
from .errors import problem

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    head = db.head_revision()
    try:
        with db.get_engine().connect() as connection:
            current = db.current_revision(connection)
            dialect = connection.dialect.name
    except SQLAlchemyError as exc:
        return problem(503, "database_unreachable", f"database unreachable: {exc.__class__.__name__}")
    if current != head:
        return problem(
            503, "database_not_migrated",
            f"database is at revision {current}, the code needs {head}: run `pointclear db upgrade`",
        )
    return jsonify(status="ok", database=dialect, revision=current)


def init_app(app) -> None:
    app.register_blueprint(bp)
