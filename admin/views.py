"""Shared view helpers: template globals and filters, form parsing."""
from __future__ import annotations

import math
from typing import Any

from flask import Flask, g

SECTIONS = [
    ("metrics.index", "Metric definitions"),
    ("profiles.index", "Weight profiles"),
    ("coverage.index", "Coverage"),
    ("playground.index", "Test playground"),
]


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number for display: fixed decimals, thousands separators for big ones, '—' for none."""
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "NaN"
    if abs(x) >= 10000:
        return f"{x:,.0f}"
    if x == int(x):
        return f"{int(x)}"
    return f"{x:.{digits}f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    """A 0..1 share as a percentage."""
    if value is None:
        return "—"
    return f"{100.0 * float(value):.{digits}f}%"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["num"] = fmt_num
    app.jinja_env.filters["pct"] = fmt_pct

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"sections": SECTIONS, "user": g.get("user"), "is_admin": g.get("role") == "admin"}
