"""Error pages: database errors show their one-line message (and hint) with a 4xx status,
never a stack trace; htmx requests get a small fragment to swap in place."""
from __future__ import annotations

import logging

import psycopg
from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from psycopg import errors as pgerr
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger("reelscore.admin")

# SQLSTATE classes a user's input can cause: data exceptions (22), integrity (23),
# raised by our functions with those codes (P0001 is RAISE without ERRCODE).
_CLIENT_ERRORS = (pgerr.DataError, pgerr.IntegrityError, pgerr.RaiseException,
                  pgerr.InvalidParameterValue, pgerr.FeatureNotSupported,
                  pgerr.ObjectNotInPrerequisiteState, pgerr.InvalidTextRepresentation)


def db_message(exc: psycopg.Error) -> dict[str, str | None]:
    """The parts of a database error worth showing: message, detail, hint, SQLSTATE."""
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or \
        ((str(exc).strip().splitlines() or ["database error"])[0])
    return {"message": primary,
            "detail": diag.message_detail if diag is not None else None,
            "hint": diag.message_hint if diag is not None else None,
            "sqlstate": diag.sqlstate if diag is not None else None}


def status_for(exc: psycopg.Error) -> int:
    if isinstance(exc, pgerr.InsufficientPrivilege):
        return 403
    if isinstance(exc, (pgerr.UndefinedFunction, pgerr.UndefinedTable, pgerr.UndefinedColumn)):
        return 501  # the SQL this page needs is not installed (yet)
    if isinstance(exc, (psycopg.OperationalError, pgerr.QueryCanceled)):
        return 503
    if isinstance(exc, _CLIENT_ERRORS):
        return 400
    return 500


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render_error(status: int, title: str, message: str, detail: str | None = None,
                 hint: str | None = None):
    template = "_error.html" if is_htmx() else "error.html"
    return render_template(template, status=status, title=title, message=message,
                           detail=detail, hint=hint), status


def init_app(app: Flask) -> None:
    @app.errorhandler(psycopg.Error)
    def _db_error(exc: psycopg.Error):
        info = db_message(exc)
        status = status_for(exc)
        if status >= 500:
            log.warning("database error on %s: %s", request.path, info["message"])
        return render_error(status, "Database error", info["message"], info["detail"], info["hint"])

    @app.errorhandler(PoolTimeout)
    def _pool_timeout(exc: PoolTimeout):
        return render_error(503, "Database unavailable",
                            "no database connection available (is the server running? 'make db')")

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return render_error(400, "Form expired", exc.description,
                            hint="Reload the page and submit again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return render_error(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s", request.path)
        return render_error(500, "Internal error",
                            "something went wrong; the server log has the details")
