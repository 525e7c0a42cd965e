"""Plain English to reelscore's search filter format (behind reelscore.parse_query).

A small rule-based parser, not a language model: an ordered list of phrase patterns,
each of which turns the words it matches into filter objects. Whatever no pattern
matched and is not a filler word ("movies", "that", "the") is returned in `unparsed`,
so the caller can see what was ignored. The vocabulary is documented in docs/search.md;
`VOCABULARY` below is the machine-readable list of the phrase families.

Output (the filter format of reelscore.search_movies, which accepts it as is):
    {"filters": [<filter object>, ...],        every object must hold
     "recognized": ["phrase -> meaning", ...],  annotation, ignored by search_movies
     "unparsed": ["words", ...]}                annotation, ignored by search_movies

Pure standard library: it runs inside the server's Python, which has no numpy.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Callable

MAX_TEXT_LENGTH = 1000

# --------------------------------------------------------------------------------------
# Meanings (filter objects). Thresholds are raw values on the metric's own scale where a
# person would say them that way ("Metacritic 75"), normalized values for categories.
# --------------------------------------------------------------------------------------
RATING_HIGH = {"category": "rating", "min_normalized": 0.8}     # the seed's "highly rated"
RATING_GOOD = {"category": "rating", "min_normalized": 0.65}
RATING_LOW = {"category": "rating", "max_normalized": 0.4}
POPULARITY_LOW = {"metric_code": "tmdb_popularity", "max_normalized": 0.3}
CULTURAL_HIGH = {"category": "cultural", "min_normalized": 0.6}
CULTURAL_CLASSIC = {"category": "cultural", "min_normalized": 0.5}
AWARD_HIGH = {"category": "award", "min_normalized": 0.5}
# The seed's "hidden gems": low popularity, high rating, high cultural impact.
HIDDEN_GEMS = [dict(POPULARITY_LOW), dict(RATING_HIGH), dict(CULTURAL_HIGH)]
# Critics: Metacritic 75+ or a Tomatometer of 80+ (whichever the film has).
CRITICS_HIGH = {"any": [{"metric_code": "metacritic_score", "min_raw_value": 75},
                        {"metric_code": "rt_tomatometer", "min_raw_value": 80}]}
CRITICS_LOW = {"any": [{"metric_code": "metacritic_score", "max_raw_value": 40},
                       {"metric_code": "rt_tomatometer", "max_raw_value": 30}]}
# Box office: any revenue source the film has says it grossed little / a lot.
REVENUE_LOW = {"any": [{"metric_code": "bom_worldwide", "max_raw_value": 20_000_000},
                       {"metric_code": "tmdb_revenue", "max_raw_value": 20_000_000},
                       {"metric_code": "bom_domestic", "max_raw_value": 10_000_000},
                       {"metric_code": "omdb_box_office", "max_raw_value": 10_000_000}]}
REVENUE_HIGH = {"any": [{"metric_code": "bom_worldwide", "min_raw_value": 300_000_000},
                        {"metric_code": "tmdb_revenue", "min_raw_value": 300_000_000},
                        {"metric_code": "bom_domestic", "min_raw_value": 150_000_000},
                        {"metric_code": "omdb_box_office", "min_raw_value": 150_000_000}]}
# Popular: a high popularity category, or many votes (the real data has votes, not TMDb popularity).
POPULAR = {"any": [{"category": "popularity", "min_normalized": 0.6},
                   {"metric_code": "imdb_vote_count", "min_raw_value": 100000},
                   {"metric_code": "tmdb_vote_count", "min_raw_value": 5000}]}

# Per-source rating words: metric code, "high" threshold (min), "low" threshold (max).
RATING_SOURCES = {
    "imdb": ("imdb_rating", 7.5, 5.5),
    "tmdb": ("tmdb_rating", 7.5, 5.5),
    "metacritic": ("metacritic_score", 75, 40),
    "metascore": ("metacritic_score", 75, 40),
    "rotten tomatoes": ("rt_tomatometer", 80, 40),
    "tomatometer": ("rt_tomatometer", 80, 40),
    "rt": ("rt_tomatometer", 80, 40),
    "audience": ("rt_audience_score", 80, 40),
}

# Metric words for numeric comparisons ("metacritic above 80", "budget under $5 million").
# A tuple of codes means "any of these sources".
NUMERIC_METRICS: dict[str, tuple[str, ...]] = {
    "imdb rating": ("imdb_rating",), "imdb score": ("imdb_rating",), "imdb": ("imdb_rating",),
    "imdb votes": ("imdb_vote_count",),
    "tmdb rating": ("tmdb_rating",), "tmdb score": ("tmdb_rating",), "tmdb": ("tmdb_rating",),
    "tmdb votes": ("tmdb_vote_count",),
    "metacritic score": ("metacritic_score",), "metacritic": ("metacritic_score",),
    "metascore": ("metacritic_score",),
    "rotten tomatoes score": ("rt_tomatometer",), "rotten tomatoes": ("rt_tomatometer",),
    "tomatometer": ("rt_tomatometer",), "rt score": ("rt_tomatometer",), "rt": ("rt_tomatometer",),
    "audience score": ("rt_audience_score",),
    "budget": ("tmdb_budget",),
    "box office": ("bom_worldwide", "tmdb_revenue"), "gross": ("bom_worldwide", "tmdb_revenue"),
    "revenue": ("bom_worldwide", "tmdb_revenue"), "worldwide gross": ("bom_worldwide",),
    "domestic gross": ("bom_domestic",),
    "oscar wins": ("oscar_wins",), "oscars": ("oscar_wins",), "oscar nominations": ("oscar_nominations",),
    "popularity": ("tmdb_popularity",),
}

# Genre words -> the labels stored in movies.genres (vega's Major Genre and Creative Type,
# MovieLens' genres, the synthetic generator's TMDb-like genres). A list means "any of these
# labels".
GENRES: dict[str, list[str]] = {
    "romantic comedy": ["Romantic Comedy"], "romantic comedies": ["Romantic Comedy"],
    "rom-com": ["Romantic Comedy"], "rom-coms": ["Romantic Comedy"], "romcom": ["Romantic Comedy"],
    "romcoms": ["Romantic Comedy"],
    "black comedy": ["Black Comedy"], "black comedies": ["Black Comedy"],
    "dark comedy": ["Black Comedy"], "dark comedies": ["Black Comedy"],
    "comedy": ["Comedy"], "comedies": ["Comedy"],
    "action": ["Action"], "adventure": ["Adventure"], "adventures": ["Adventure"],
    "drama": ["Drama"], "dramas": ["Drama"],
    "horror": ["Horror"], "musical": ["Musical", "Music"], "musicals": ["Musical", "Music"],
    "historical": ["History", "Historical Fiction"], "history": ["History", "Historical Fiction"],
    "period pieces": ["History", "Historical Fiction"],
    "thriller": ["Thriller/Suspense", "Thriller"], "thrillers": ["Thriller/Suspense", "Thriller"],
    "suspense": ["Thriller/Suspense", "Thriller"],
    "western": ["Western"], "westerns": ["Western"],
    "documentary": ["Documentary"], "documentaries": ["Documentary"],
    "concert film": ["Concert/Performance"], "concert films": ["Concert/Performance"],
    "concert": ["Concert/Performance"], "concerts": ["Concert/Performance"],
    "sci-fi": ["Science Fiction", "Sci-Fi"], "scifi": ["Science Fiction", "Sci-Fi"],
    "science fiction": ["Science Fiction", "Sci-Fi"], "science-fiction": ["Science Fiction", "Sci-Fi"],
    "fantasy": ["Fantasy"], "fantasies": ["Fantasy"],
    "superhero": ["Super Hero"], "superheroes": ["Super Hero"], "super hero": ["Super Hero"],
    "animated": ["Animation"], "animation": ["Animation"], "cartoons": ["Animation"],
    "kids": ["Family", "Kids Fiction", "Children's"], "children's": ["Family", "Children's", "Kids Fiction"],
    "family": ["Family", "Kids Fiction", "Children's"],
    "crime": ["Crime"], "mystery": ["Mystery"], "mysteries": ["Mystery"],
    "romance": ["Romance"], "romances": ["Romance"], "romantic": ["Romance"],
    "war": ["War"], "film noir": ["Film-Noir"], "film-noir": ["Film-Noir"], "noir": ["Film-Noir"],
}

STOPWORDS = frozenset(["a", "an", "the", "movie", "movies", "film", "films", "flick", "flicks", "picture", "pictures", "cinema", "that", "which", "who", "whose", "were", "was", "is", "are", "be", "been", "being", "with", "from", "of", "in", "on", "at", "by", "for", "to", "and", "or", "but", "show", "me", "find", "list", "give", "get", "i", "want", "some", "any", "all", "please", "made", "released", "came", "out", "ever", "kind", "sort", "like", "really", "very", "also", "has", "have", "had", "there", "their", "them", "they", "it", "its", "what", "whats", "where", "about", "ones", "one", "those", "these", "this", "my", "our", "you", "your", "we", "let's", "lets", "see", "watch", "watching", "something", "anything", "stuff", "titles", "title"])

Meaning = list[dict]


def _copy(objs: list[dict] | dict) -> Meaning:
    import copy
    return copy.deepcopy(objs if isinstance(objs, list) else [objs])


def _key(phrase: str) -> str:
    """Lookup key of a phrase: lower case without spaces and hyphens ('Sci-Fi' -> 'scifi')."""
    return re.sub(r"[\s-]+", "", phrase.lower())


def _alternation(words) -> str:
    """Regex alternation of phrases, longest first (so 'romantic comedy' beats 'romantic');
    a space or hyphen in a phrase matches any run of spaces and hyphens, or none for a hyphen."""
    parts = []
    for w in sorted(words, key=len, reverse=True):
        parts.append(re.escape(w).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]*"))
    return "|".join(parts)


def _lookup(table: dict, phrase: str):
    return {_key(k): v for k, v in table.items()}[_key(phrase)]


def _describe(obj: dict) -> str:
    """Human-readable meaning of a filter object, for the `recognized` annotation."""
    if "any" in obj:
        return " or ".join(_describe(o) for o in obj["any"])
    if "genre" in obj:
        return "genre " + " or ".join(obj["genre"])
    target = obj.get("category") or obj.get("metric_code")
    parts = []
    for key, op in (("min_normalized", ">="), ("max_normalized", "<="), ("min_raw_value", ">="),
                    ("max_raw_value", "<=")):
        if key in obj:
            kind = "normalized " if "normalized" in key else ""
            parts.append(f"{target} {kind}{op} {obj[key]:g}")
    if "year_min" in obj:
        parts.append(f"year >= {obj['year_min']}")
    if "year_max" in obj:
        parts.append(f"year <= {obj['year_max']}")
    return " and ".join(parts)


# --------------------------------------------------------------------------------------
# Years and decades
# --------------------------------------------------------------------------------------
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950,
                 "sixties": 1960, "seventies": 1970, "eighties": 1980, "nineties": 1990}
_DECADE = (r"(?:(?P<full>1[89]\d0|20\d0)'?s|'?(?P<short>\d0)'?s|(?P<word>"
           + "|".join(_DECADE_WORDS) + "))")
_PART = r"(?:(?P<part>early|mid|late)[\s-]+)?"


def _decade_range(m: re.Match) -> tuple[int, int]:
    if m.group("full"):
        start = int(m.group("full"))
    elif m.group("short"):
        d = int(m.group("short"))
        start = 2000 + d if d < 20 else 1900 + d   # '00s, '10s -> 2000s, 2010s; '20s..'90s -> 1900s
    else:
        start = _DECADE_WORDS[m.group("word")]
    part = m.group("part")
    if part == "early":
        return start, start + 3
    if part == "mid":
        return start + 4, start + 6
    if part == "late":
        return start + 7, start + 9
    return start, start + 9


def _year_obj(lo: int | None, hi: int | None) -> dict:
    obj = {}
    if lo is not None:
        obj["year_min"] = lo
    if hi is not None:
        obj["year_max"] = hi
    return obj


# --------------------------------------------------------------------------------------
# Numbers ("$5 million", "80%", "1.5b", "100k")
# --------------------------------------------------------------------------------------
_NUMBER = r"\$?\s*(?P<num>\d+(?:[.,]\d+)*)\s*(?P<unit>%|k\b|m\b|mm\b|mil\b|million\b|millions\b|b\b|bn\b|billion\b|billions\b)?"
_UNITS = {"k": 1e3, "m": 1e6, "mm": 1e6, "mil": 1e6, "million": 1e6, "millions": 1e6,
          "b": 1e9, "bn": 1e9, "billion": 1e9, "billions": 1e9}
_MIN_WORDS = r"above|over|greater than|more than|higher than|at least|>=|>|min(?:imum)?(?: of)?"
_MAX_WORDS = r"below|under|less than|lower than|at most|<=|<|max(?:imum)?(?: of)?"


def _number(m: re.Match) -> float:
    num = m.group("num")
    # "1,500,000" is thousands separators; "7,5" (European decimal) is read as 7.5
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", num):
        value = float(num.replace(",", ""))
    else:
        value = float(num.replace(",", "."))
    unit = (m.group("unit") or "").strip()
    return value * _UNITS.get(unit, 1.0)


def _clean(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


# --------------------------------------------------------------------------------------
# The rules: (pattern, handler(match, ctx) -> list of filter objects). Order matters:
# longer, more specific phrases come first and consume their words.
# --------------------------------------------------------------------------------------
Rule = tuple[re.Pattern, Callable[[re.Match, dict], Meaning]]


def _rules() -> list[Rule]:
    rules: list[tuple[str, Callable[[re.Match, dict], Meaning]]] = []

    def add(pattern: str, handler):
        rules.append((pattern, handler if callable(handler) else (lambda m, ctx, h=handler: _copy(h))))

    # Seed combinations.
    add(r"hidden[\s-]+gems?", HIDDEN_GEMS)
    add(r"underrated|under[\s-]+rated|underappreciated",
        [dict(POPULARITY_LOW), dict(RATING_HIGH)])

    # Year ranges, decades, single years.
    year = r"(?P<y>1[89]\d\d|20\d\d)"
    span = r"(?P<a>1[89]\d\d|20\d\d)\s*(?:-|to|until|through|and)\s*(?P<b>1[89]\d\d|20\d\d)"
    # "1990-1999", "1990 to 1999", "between 1990 and 1999", "from 1990 through 1999"
    add(r"(?:(?:between|from)\s+)?" + span,
        lambda m, ctx: [_year_obj(min(int(m["a"]), int(m["b"])), max(int(m["a"]), int(m["b"])))])
    dec = r"\s+(?:the\s+)?" + _PART + _DECADE
    add(r"(?:since|starting(?:\s+in)?)" + dec, lambda m, ctx: [_year_obj(_decade_range(m)[0], None)])
    add(r"after" + dec, lambda m, ctx: [_year_obj(_decade_range(m)[1] + 1, None)])
    add(r"(?:before|prior\s+to)" + dec, lambda m, ctx: [_year_obj(None, _decade_range(m)[0] - 1)])
    add(r"(?:until|till|through|up\s+to)" + dec, lambda m, ctx: [_year_obj(None, _decade_range(m)[1])])
    add(r"(?:(?:from|in|during|of)\s+)?(?:the\s+)?" + _PART + _DECADE,
        lambda m, ctx: [_year_obj(*_decade_range(m))])
    add(r"(?:since|starting(?:\s+in)?)\s+" + year + r"(?:\s+on(?:wards?)?)?",
        lambda m, ctx: [_year_obj(int(m["y"]), None)])
    add(r"from\s+" + year + r"\s+on(?:wards?)?", lambda m, ctx: [_year_obj(int(m["y"]), None)])
    add(r"after\s+" + year, lambda m, ctx: [_year_obj(int(m["y"]) + 1, None)])
    add(r"(?:before|prior\s+to)\s+" + year, lambda m, ctx: [_year_obj(None, int(m["y"]) - 1)])
    add(r"(?:until|till|through|up\s+to)\s+" + year, lambda m, ctx: [_year_obj(None, int(m["y"]))])
    add(r"(?:(?:in|from|of|during|released\s+in)\s+)?" + year,
        lambda m, ctx: [_year_obj(int(m["y"]), int(m["y"]))])
    add(r"recent|recently\s+released|new\s+releases?|latest",
        lambda m, ctx: [_year_obj(ctx["year"] - 5, None)])

    # Numeric comparisons on a named metric: "metacritic above 80", "budget under $5 million",
    # "at least 3 oscars", "more than 2 oscar wins".
    metric_alt = _alternation(NUMERIC_METRICS)

    def numeric(m: re.Match, ctx) -> Meaning:
        codes = _lookup(NUMERIC_METRICS, m["metric"])
        key = "min_raw_value" if re.fullmatch(_MIN_WORDS, re.sub(r"\s+", " ", m["cmp"])) else "max_raw_value"
        value = _clean(_number(m))
        objs = [{"metric_code": c, key: value} for c in codes]
        return objs if len(objs) == 1 else [{"any": objs}]

    add(r"(?P<metric>" + metric_alt + r")(?:\s+(?:score|rating|ratings|of))?\s+(?:is\s+|was\s+|of\s+)?"
        r"(?P<cmp>" + _MIN_WORDS + "|" + _MAX_WORDS + r")\s*" + _NUMBER, numeric)
    add(r"(?P<cmp>" + _MIN_WORDS + "|" + _MAX_WORDS + r")\s*" + _NUMBER.replace("(?P<unit>", "(?P<unit>")
        + r"\s+(?P<metric>oscars|oscar\s+wins|oscar\s+nominations|imdb\s+votes|tmdb\s+votes)", numeric)
    add(r"(?P<num>\d+)\s*\+\s*(?P<metric>oscars|oscar\s+wins|oscar\s+nominations)",
        lambda m, ctx: [{"metric_code": _lookup(NUMERIC_METRICS, m["metric"])[0],
                         "min_raw_value": int(m["num"])}])

    # Source-specific rating words: "low IMDb ratings", "high metacritic scores",
    # "rated highly on rotten tomatoes".
    src_alt = _alternation(RATING_SOURCES)

    def source_rating(m: re.Match, ctx) -> Meaning:
        code, hi, lo = _lookup(RATING_SOURCES, m["src"])
        high = m["level"] in ("high", "higher", "good", "great", "strong", "excellent", "highly", "well")
        return [{"metric_code": code, "min_raw_value": hi} if high else {"metric_code": code, "max_raw_value": lo}]

    level = r"(?P<level>low|lower|poor|bad|weak|terrible|high|higher|good|great|strong|excellent)"
    add(level + r"\s+(?P<src>" + src_alt + r")(?:\s+(?:user|critic|critics'?|audience))?"
        r"(?:\s+(?:ratings?|scores?|reviews?|grades?))?", source_rating)
    add(r"(?:rated|reviewed|scored)\s+(?P<level>highly|well|poorly|badly|low|high)\s+(?:on|by|at)\s+(?P<src>"
        + src_alt + ")", lambda m, ctx: source_rating(m, ctx) if m["level"] not in ("poorly", "badly")
        else [{"metric_code": _lookup(RATING_SOURCES, m["src"])[0],
               "max_raw_value": _lookup(RATING_SOURCES, m["src"])[2]}])

    # Critics.
    add(r"critically[\s-]+(?:acclaimed|praised|lauded)|critics'?\s+(?:darlings?|favou?rites?|picks?|choices?)"
        r"|(?:praised|loved|lauded)\s+by\s+(?:the\s+)?critics|well[\s-]+reviewed|acclaimed", CRITICS_HIGH)
    add(r"critically[\s-]+panned|panned(?:\s+by\s+(?:the\s+)?critics)?|(?:hated|disliked)\s+by\s+(?:the\s+)?critics"
        r"|(?:poorly|badly)[\s-]+reviewed", CRITICS_LOW)

    # Box office.
    add(r"(?:that\s+|which\s+)?(?:bombed|flopped|tanked|failed)(?:\s+(?:at|in)\s+the\s+box[\s-]+office)?"
        r"|box[\s-]+office\s+(?:bombs?|flops?|failures?|disasters?|duds?)|commercial\s+(?:failures?|flops?)"
        r"|flops|bombs|duds", REVENUE_LOW)
    add(r"box[\s-]+office\s+(?:hits?|successes|success|smash(?:es)?)|blockbusters?|commercial\s+(?:hits?|success(?:es)?)"
        r"|smash\s+hits?|(?:big|huge)\s+hits?|hits", REVENUE_HIGH)
    add(r"big[\s-]+budget|high[\s-]+budget|expensive", [{"metric_code": "tmdb_budget", "min_raw_value": 100_000_000}])
    add(r"low[\s-]+budget|shoestring(?:[\s-]+budget)?|micro[\s-]+budget|cheap(?:ly\s+made)?",
        [{"metric_code": "tmdb_budget", "max_raw_value": 5_000_000}])

    # Awards.
    add(r"(?:oscar|academy[\s-]+award)[\s-]+(?:winners?|winning)|won\s+(?:an?\s+|the\s+)?(?:oscars?|academy\s+awards?)"
        r"|(?:oscar|academy[\s-]+award)s?[\s-]+won", [{"metric_code": "oscar_wins", "min_raw_value": 1}])
    add(r"(?:oscar|academy[\s-]+award)[\s-]+(?:nominated|nominees?|nominations?)"
        r"|nominated\s+for\s+(?:an?\s+|the\s+)?(?:oscars?|academy\s+awards?)",
        [{"metric_code": "oscar_nominations", "min_raw_value": 1}])
    add(r"palme\s+d'?or(?:\s+winners?)?", [{"metric_code": "cannes_palme_dor", "min_raw_value": 1}])
    add(r"golden\s+lion(?:\s+winners?)?", [{"metric_code": "venice_golden_lion", "min_raw_value": 1}])
    add(r"golden\s+bear(?:\s+winners?)?", [{"metric_code": "berlin_golden_bear", "min_raw_value": 1}])
    add(r"sundance(?:\s+(?:grand\s+jury|winners?|prize))*", [{"metric_code": "sundance_grand_jury", "min_raw_value": 1}])
    add(r"award[\s-]+(?:winners?|winning)|festival[\s-]+(?:winners?|favou?rites?)|prize[\s-]+winning", AWARD_HIGH)

    # Canon lists and cultural impact.
    add(r"afi(?:'s)?(?:\s+top)?(?:\s+100)?", [{"metric_code": "afi_top_100", "min_raw_value": 1}])
    add(r"bfi(?:'s)?(?:\s+top)?(?:\s+100)?", [{"metric_code": "bfi_top_100", "min_raw_value": 1}])
    add(r"sight\s+(?:and|&)\s+sound", [{"metric_code": "sight_sound_rank", "min_raw_value": 1}])
    add(r"criterion(?:\s+collection)?", [{"metric_code": "criterion_collection", "min_raw_value": 1}])
    add(r"national\s+film\s+registry|nfr", [{"metric_code": "nfr_preserved", "min_raw_value": 1}])
    add(r"masterpieces?|all[\s-]+time\s+greats?|greatest(?:\s+(?:movies|films))?(?:\s+of\s+all\s+time)?"
        r"|canonical|the\s+canon|culturally\s+(?:important|significant)|influential", CULTURAL_HIGH)
    add(r"classics?", CULTURAL_CLASSIC)

    # General rating words.
    add(r"highly[\s-]+rated|top[\s-]+rated|well[\s-]+rated|best[\s-]+rated|best|great|excellent|outstanding"
        r"|must[\s-]+see|brilliant", RATING_HIGH)
    add(r"poorly[\s-]+rated|badly[\s-]+rated|low[\s-]+rated|worst|terrible|awful|bad", RATING_LOW)
    add(r"good|decent|solid|well[\s-]+made", RATING_GOOD)

    # Popularity.
    add(r"obscure|little[\s-]+known|lesser[\s-]+known|under\s+the\s+radar|overlooked|underseen|unpopular|niche",
        [dict(POPULARITY_LOW)])
    add(r"popular|well[\s-]+known|crowd[\s-]+pleasers?|crowd[\s-]+pleasing|mainstream|famous", POPULAR)
    add(r"trending", [{"metric_code": "tmdb_trending_rank", "max_raw_value": 20}])

    return [(re.compile(r"(?<![\w'-])(?:" + p + r")(?![\w'-])"), h) for p, h in rules]


_GENRE_RE = re.compile(r"(?<![\w'-])(?:" + _alternation(GENRES) + r")(?![\w'-])")
_RULES = _rules()
_TOKEN_RE = re.compile(r"[a-z0-9$%][a-z0-9$%'.,+-]*")

VOCABULARY = {
    "genres": sorted(GENRES),
    "rating_sources": sorted(RATING_SOURCES),
    "numeric_metrics": sorted(NUMERIC_METRICS),
}


def _normalize_text(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-").replace("\u2014", " ")
    out = []
    for ch in text:                      # lower-case character by character: keeps positions
        low = ch.lower()
        out.append(low if len(low) == 1 else ch)
    return "".join(out)


def parse_query(text: str | None, today: datetime.date | None = None) -> dict:
    """Turn plain English into the filter format of reelscore.search_movies.

    Returns {"filters": [...], "recognized": [...], "unparsed": [...]}. Raises ValueError
    when the text is longer than MAX_TEXT_LENGTH characters."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TypeError("parse_query takes text")
    if len(text) > MAX_TEXT_LENGTH:
        raise ValueError(f"query text is {len(text)} characters long; at most {MAX_TEXT_LENGTH} are accepted")
    ctx = {"year": (today or datetime.date.today()).year}
    work = _normalize_text(text)
    consumed = [False] * len(work)
    found: list[tuple[int, list[dict], str]] = []   # (position, filter objects, phrase)

    def take(m: re.Match) -> bool:
        if any(consumed[m.start():m.end()]):
            return False
        for i in range(m.start(), m.end()):
            consumed[i] = True
        return True

    def masked() -> str:
        return "".join(" " if consumed[i] else c for i, c in enumerate(work))

    for pattern, handler in _RULES:
        for m in list(pattern.finditer(masked())):
            if m.group(0).strip() and take(m):
                found.append((m.start(), handler(m, ctx), work[m.start():m.end()].strip()))

    # Genres: "action comedies" (side by side) must both hold; a list joined by "or", "and",
    # "&", "/" or commas ("comedies or dramas", "westerns, musicals") is one any-of set.
    groups: list[list[tuple[int, int, list[str]]]] = []
    for m in _GENRE_RE.finditer(masked()):
        if not take(m):
            continue
        hit = (m.start(), m.end(), _lookup(GENRES, m.group(0)))
        between = work[groups[-1][-1][1]:hit[0]] if groups else ""
        if groups and re.fullmatch(r"\s*(?:,|/|&|,?\s*(?:or|and|and/or)\b)\s*", between):
            groups[-1].append(hit)
        else:
            groups.append([hit])
    for group in groups:
        labels: list[str] = []
        for _, _, names in group:
            labels.extend(n for n in names if n not in labels)
        found.append((group[0][0], [{"genre": labels}], work[group[0][0]:group[-1][1]]))

    found.sort(key=lambda f: f[0])
    filters: list[dict] = []
    recognized: list[str] = []
    for _, objs, phrase in found:
        for obj in objs:
            if obj not in filters:
                filters.append(obj)
        recognized.append(f"{phrase} -> " + "; ".join(_describe(o) for o in objs))

    # What is left: runs of words no rule matched, minus filler words. A run ends at a
    # filler word, at punctuation, or where a recognized phrase sat.
    unparsed: list[str] = []
    run: list[str] = []
    rest = masked()
    last_end = 0
    for m in _TOKEN_RE.finditer(rest):
        word = m.group(0).rstrip(".,'")
        broken = any(consumed[last_end:m.start()]) or rest[last_end:m.start()].strip()
        if run and (broken or word in STOPWORDS or not word):
            unparsed.append(" ".join(run))
            run = []
        if word and word not in STOPWORDS:
            run.append(word)
        last_end = m.end()
    if run:
        unparsed.append(" ".join(run))
    return {"filters": filters, "recognized": recognized, "unparsed": unparsed}


def parse_query_sql(plpy, text: str | None) -> str:
    """The body of reelscore.parse_query(text): JSON text, or a 22023 error."""
    import json
    try:
        return json.dumps(parse_query(text))
    except ValueError as exc:
        plpy.error(str(exc), hint="Shorten the query text.", sqlstate="22023")
