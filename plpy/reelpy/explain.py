"""Why a movie scored as it did: one short sentence built from explain_score() rows.

`build_sentence` is pure (rows in, text out) so it is unit-tested without a database;
`sentence_for` fetches the rows through the server's plpy and calls it.

Example: "High (0.82, confidence 71%) under balanced because of strong critic reviews and
two Oscar wins; held back by modest box office; no cultural-list data."
"""

NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve"]

CATEGORY_NOUNS = {
    "rating": "ratings",
    "award": "awards",
    "financial": "box-office",
    "cultural": "cultural-list",
    "popularity": "popularity",
}

# Metrics that read better as a group than one by one.
GROUPS = {
    "metacritic_score": "critic reviews", "rt_tomatometer": "critic reviews",
    "imdb_rating": "audience ratings", "tmdb_rating": "audience ratings", "rt_audience_score": "audience ratings",
    "imdb_vote_count": "audience reach", "tmdb_vote_count": "audience reach",
    "tmdb_budget": "budget",
    "tmdb_revenue": "box office", "omdb_box_office": "box office", "bom_domestic": "box office",
    "bom_worldwide": "box office",
    "afi_top_100": "canon lists", "bfi_top_100": "canon lists", "sight_sound_rank": "canon lists",
    "tmdb_popularity": "popularity", "tmdb_trending_rank": "popularity", "twitter_mentions": "popularity",
}

PRIZES = {
    "cannes_palme_dor": "the Palme d'Or", "venice_golden_lion": "the Golden Lion",
    "berlin_golden_bear": "the Golden Bear", "sundance_grand_jury": "the Sundance Grand Jury Prize",
    "cannes_selection": "a Cannes selection", "venice_selection": "a Venice selection",
    "criterion_collection": "a Criterion release", "1001_movies": "a place in 1001 Movies",
    "nfr_preserved": "a place in the National Film Registry",
}

STRONG = 0.7   # a used value at or above this is a strength
WEAK = 0.4     # below this, a weakness


def number_word(n) -> str:
    n = round(n)
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def level_word(score) -> str:
    if score is None:
        return "Unscored"
    if score >= 0.7:
        return "High"
    if score >= 0.45:
        return "Middling"
    return "Low"


def quality(value) -> str:
    if value >= 0.85:
        return "outstanding"
    if value >= STRONG:
        return "strong"
    if value >= WEAK:
        return "modest"
    return "weak"


def describe(row) -> str:
    """A phrase for one metric (or its group) at its used value."""
    code = row["metric_code"]
    value = row["used_value"]
    raw = row.get("raw_value")
    if code in ("oscar_wins", "oscar_nominations") and raw is not None:
        n = round(raw)
        noun = "Oscar win" if code == "oscar_wins" else "Oscar nomination"
        return f"{number_word(n)} {noun}{'' if n == 1 else 's'}"
    if code in PRIZES:
        return PRIZES[code] if (raw or 0) else f"no {PRIZES[code].split(' ', 1)[1]}"
    if row.get("inverted"):
        return "little hype" if value >= STRONG else "a lot of hype"
    group = GROUPS.get(code, row.get("metric_name") or code)
    return f"{quality(value)} {group}"


def join_words(parts) -> str:
    parts = list(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _grouped(rows):
    """Merge rows of the same group (e.g. two critic metrics) into one, weight-averaged."""
    out = {}
    order = []
    for r in rows:
        key = GROUPS.get(r["metric_code"], r["metric_code"])
        if r["metric_code"] in ("oscar_wins", "oscar_nominations") or r["metric_code"] in PRIZES:
            key = r["metric_code"]
        if key not in out:
            out[key] = dict(r)
            out[key]["_w"] = r["applied_weight"]
            out[key]["_wv"] = r["applied_weight"] * r["used_value"]
            order.append(key)
        else:
            out[key]["_w"] += r["applied_weight"]
            out[key]["_wv"] += r["applied_weight"] * r["used_value"]
            out[key]["contribution"] += r["contribution"]
    for g in out.values():
        if g["_w"] > 0:
            g["used_value"] = g["_wv"] / g["_w"]
        g["applied_weight"] = g["_w"]
    return [out[k] for k in order]


def build_sentence(rows, score, confidence, profile, title=None, max_items=3) -> str:
    """The sentence for explain_score(..., include missing) rows.

    rows: dicts with metric_code, metric_name, category, raw_value, used_value, status,
    category_weight, applied_weight, contribution (and optionally inverted)."""
    used = [r for r in rows if (r.get("applied_weight") or 0) > 0 and r.get("used_value") is not None]
    head = f"{level_word(score)}"
    if score is not None:
        head += f" ({score:.2f}, confidence {round((confidence or 0) * 100):d}%)"
    head += f" under {profile}"
    if title:
        head = f"{title}: {head}"

    groups = _grouped(used)
    # an Oscar/prize counts as a strength only when the movie has it
    def is_strength(g):
        if g["metric_code"] in PRIZES or g["metric_code"] in ("oscar_wins", "oscar_nominations"):
            return (g.get("raw_value") or 0) > 0 and g["used_value"] >= 0.3
        return g["used_value"] >= STRONG

    strengths = sorted((g for g in groups if is_strength(g)), key=lambda g: -g["contribution"])
    weaknesses = sorted((g for g in groups if not is_strength(g) and g["used_value"] < WEAK
                         and g["metric_code"] not in PRIZES
                         and g["metric_code"] not in ("oscar_wins", "oscar_nominations")),
                        key=lambda g: -g["applied_weight"] * (1 - g["used_value"]))

    weighted_cats = []
    for r in rows:
        if (r.get("category_weight") or 0) > 0 and r["category"] not in weighted_cats:
            weighted_cats.append(r["category"])
    cats_with_data = {r["category"] for r in used}
    missing = [c for c in weighted_cats if c not in cats_with_data]

    clauses = []
    if score is None:
        clauses.append("no data in any category the profile weighs")
    else:
        if strengths:
            clauses.append("because of " + join_words(describe(g) for g in strengths[:max_items]))
        elif groups:
            clauses.append("with no standout strength")
        if weaknesses:
            clauses.append("held back by " + join_words(describe(g) for g in weaknesses[:2]))
    if missing and score is not None:
        clauses.append(join_words(f"no {CATEGORY_NOUNS.get(c, c)} data" for c in missing))
    imputed = [r for r in rows if r.get("status") == "imputed" and (r.get("applied_weight") or 0) > 0]
    if imputed:
        clauses.append(f"{number_word(len(imputed))} value{'s' if len(imputed) != 1 else ''} imputed")

    if not clauses:
        return head + "."
    first, rest = clauses[0], clauses[1:]
    sep = " " if first.startswith(("because", "with")) else ": "
    return head + sep + "; ".join([first] + rest) + "."


def sentence_for(plpy, movie_id, profile) -> str:
    """Fetch the breakdown of a movie under a profile and build its sentence."""
    plan = plpy.prepare(
        "SELECT e.*, (p.config -> 'invert') ? e.metric_code AS inverted "
        "FROM reelscore.explain_score($1, $2, true) e "
        "CROSS JOIN reelscore.weight_profiles p WHERE p.name = $2", ["bigint", "text"])
    rows = [dict(r) for r in plpy.execute(plan, [movie_id, profile])]
    head = plpy.execute(plpy.prepare(
        "SELECT m.title, d.score, d.confidence FROM reelscore.movies m "
        "CROSS JOIN reelscore.movie_score_detail($1, $2) d WHERE m.id = $1", ["bigint", "text"]),
        [movie_id, profile])
    title = head[0]["title"] if head else None
    score = head[0]["score"] if head else None
    conf = head[0]["confidence"] if head else None
    return build_sentence(rows, score, conf, profile, title=title)
