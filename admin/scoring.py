"""Thin helpers over the scoring SQL API shared by the profiles and playground sections:
parsing weight inputs from a form into the JSON the SQL functions take, and calling
top_movies / top_movies_adhoc. No arithmetic on weights or scores happens here."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from admin.db import function_exists, query

CATEGORIES = ["rating", "award", "financial", "cultural", "popularity"]


class BadInput(ValueError):
    """A form value that is not a number (shown beside its field, nothing changes)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _number(args: Mapping[str, str], key: str) -> float | None:
    raw = (args.get(key) or "").strip()
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadInput(key, f"not a number: {raw!r}") from None


def weights_from_form(args: Mapping[str, str], metric_codes: list[str]) -> dict[str, Any]:
    """{"categories": {cat: w}, "metrics": {code: {"weight": w, "enabled": b} | null}} from
    inputs named cat_<category>, m_<code> and en_<code> (checkbox). A blank, enabled metric is
    null: no override, the registry weight applies (and a base profile's override is dropped).
    Metric inputs are read only when the form says it carries them (has_metrics=1)."""
    cats = {}
    for c in CATEGORIES:
        v = _number(args, f"cat_{c}")
        cats[c] = 0.0 if v is None else v
    metrics: dict[str, Any] = {}
    if args.get("has_metrics") == "1":
        for code in metric_codes:
            w = _number(args, f"m_{code}")
            enabled = args.get(f"en_{code}") in ("on", "1", "true", "y")
            if w is None and enabled:
                metrics[code] = None  # no override: the registry weight applies
                continue
            entry: dict[str, Any] = {"enabled": enabled}
            if w is not None:
                entry["weight"] = w
            metrics[code] = entry
    return {"categories": cats, "metrics": metrics}


def scoring_ready() -> bool:
    return function_exists("top_movies_adhoc")


def top_movies(profile: str, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    return query("SELECT * FROM reelscore.top_movies(%s, %s, %s)", (profile, limit, offset))


def top_movies_adhoc(weights: dict[str, Any], limit: int = 20) -> list[dict[str, Any]]:
    return query("SELECT * FROM reelscore.top_movies_adhoc(%s::jsonb, %s)", (json.dumps(weights), limit))
