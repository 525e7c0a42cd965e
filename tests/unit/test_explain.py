"""The explanation sentence, built from breakdown rows without a database."""
from __future__ import annotations

from reelpy import explain


def row(code, category, used, applied, raw=None, status="present", cw=0.25, name=None):
    return {"metric_code": code, "metric_name": name or code, "category": category, "raw_value": raw,
            "used_value": used, "status": status, "category_weight": cw, "applied_weight": applied,
            "contribution": applied * (used or 0)}


def test_strengths_and_missing_categories():
    rows = [
        row("metacritic_score", "rating", 0.92, 0.2, raw=92),
        row("rt_tomatometer", "rating", 0.95, 0.2, raw=95),
        row("oscar_wins", "award", 0.8, 0.33, raw=2),
        row("tmdb_revenue", "financial", None, 0.0, status="missing"),
        row("afi_top_100", "cultural", 0.7, 0.27, raw=40),
    ]
    text = explain.build_sentence(rows, 0.84, 0.5, "balanced", title="Casablanca")
    assert text.startswith("Casablanca: High (0.84, confidence 50%) under balanced because of ")
    assert "outstanding critic reviews" in text          # two critic metrics merged into one phrase
    assert text.count("critic reviews") == 1
    assert "two Oscar wins" in text
    assert text.endswith("; no box-office data.")


def test_weaknesses_and_low_level():
    rows = [
        row("imdb_rating", "rating", 0.31, 0.5, raw=3.1),
        row("tmdb_revenue", "financial", 0.2, 0.5, raw=1e5),
    ]
    text = explain.build_sentence(rows, 0.255, 0.3, "crowd_pleaser")
    assert text.startswith("Low (0.26, confidence 30%) under crowd_pleaser")
    assert "with no standout strength" in text
    # the bigger drag first: box office costs 0.5 x (1 - 0.2), ratings 0.5 x (1 - 0.31)
    assert "held back by weak box office and weak audience ratings" in text


def test_no_data():
    rows = [row("imdb_rating", "rating", None, 0.0, status="missing")]
    text = explain.build_sentence(rows, None, 0.0, "balanced")
    assert text == "Unscored under balanced: no data in any category the profile weighs."


def test_single_oscar_and_imputed_values():
    rows = [
        row("oscar_wins", "award", 0.6, 0.5, raw=1),
        row("oscar_nominations", "award", 0.2, 0.5, status="imputed"),
    ]
    text = explain.build_sentence(rows, 0.4, 0.25, "award_seeker")
    assert "one Oscar win" in text and "wins" not in text
    assert "one value imputed" in text


def test_inverted_popularity_reads_as_little_hype():
    r = row("tmdb_popularity", "popularity", 0.9, 0.4, raw=2)
    r["inverted"] = True
    text = explain.build_sentence([r], 0.9, 0.4, "hidden_gems")
    assert "because of little hype" in text


def test_number_words_and_join():
    assert explain.number_word(2) == "two"
    assert explain.number_word(15) == "15"
    assert explain.join_words(["a"]) == "a"
    assert explain.join_words(["a", "b", "c"]) == "a, b and c"
