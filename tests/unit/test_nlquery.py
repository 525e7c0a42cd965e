"""reelpy.nlquery: plain English to the search filter format (no database)."""
import datetime

import pytest
from reelpy.nlquery import GENRES, MAX_TEXT_LENGTH, parse_query

TODAY = datetime.date(2026, 11, 26)


def p(text):
    return parse_query(text, today=TODAY)


def test_the_issue_examples():
    r = p("critically acclaimed sci-fi movies that bombed at the box office")
    assert r["unparsed"] == []
    assert {"any": [{"metric_code": "metacritic_score", "min_raw_value": 75},
                    {"metric_code": "rt_tomatometer", "min_raw_value": 80}]} in r["filters"]
    assert {"genre": ["Science Fiction", "Sci-Fi"]} in r["filters"]
    bombed = [f for f in r["filters"] if "any" in f and f["any"][0]["metric_code"] == "bom_worldwide"]
    assert bombed and all("max_raw_value" in c for c in bombed[0]["any"])

    r = p("hidden gems from the 90s")
    assert r["unparsed"] == []
    # the seed's combination: low popularity, high rating, high cultural impact
    assert r["filters"][:3] == [{"metric_code": "tmdb_popularity", "max_normalized": 0.3},
                                {"category": "rating", "min_normalized": 0.8},
                                {"category": "cultural", "min_normalized": 0.6}]
    assert {"year_min": 1990, "year_max": 1999} in r["filters"]

    r = p("Oscar winners with low IMDb ratings")
    assert r == {"filters": [{"metric_code": "oscar_wins", "min_raw_value": 1},
                             {"metric_code": "imdb_rating", "max_raw_value": 5.5}],
                 "recognized": r["recognized"], "unparsed": []}

    r = p("popular comedies since 2005")
    assert r["unparsed"] == []
    assert {"genre": ["Comedy"]} in r["filters"]
    assert {"year_min": 2005} in r["filters"]
    popular = next(f for f in r["filters"] if "any" in f)["any"]
    assert {"category": "popularity", "min_normalized": 0.6} in popular


@pytest.mark.parametrize("text,years", [
    ("90s", (1990, 1999)), ("the 1980s", (1980, 1989)), ("'70s", (1970, 1979)), ("80's", (1980, 1989)),
    ("the nineties", (1990, 1999)), ("2000s", (2000, 2009)), ("the 00s", (2000, 2009)),
    ("early 90s", (1990, 1993)), ("mid-80s", (1984, 1986)), ("late 60s", (1967, 1969)),
    ("in 1995", (1995, 1995)), ("between 1990 and 1994", (1990, 1994)), ("1990-1994", (1990, 1994)),
    ("from 2001 to 1999", (1999, 2001)),
    ("since 2005", (2005, None)), ("after 2005", (2006, None)), ("before 1980", (None, 1979)),
    ("until 1980", (None, 1980)), ("since the 90s", (1990, None)), ("before the 90s", (None, 1989)),
    ("after the 90s", (2000, None)), ("recent", (2021, None)),
])
def test_years(text, years):
    r = p(text)
    lo, hi = years
    want = {k: v for k, v in (("year_min", lo), ("year_max", hi)) if v is not None}
    assert r["filters"] == [want], r
    assert r["unparsed"] == []


@pytest.mark.parametrize("text,code,key,value", [
    ("metacritic above 80", "metacritic_score", "min_raw_value", 80),
    ("metacritic score over 80", "metacritic_score", "min_raw_value", 80),
    ("imdb rating below 5", "imdb_rating", "max_raw_value", 5),
    ("imdb rating of at least 7.5", "imdb_rating", "min_raw_value", 7.5),
    ("budget under $5 million", "tmdb_budget", "max_raw_value", 5_000_000),
    ("budget over 1.5b", "tmdb_budget", "min_raw_value", 1_500_000_000),
    ("imdb votes over 100k", "imdb_vote_count", "min_raw_value", 100_000),
    ("rotten tomatoes above 90%", "rt_tomatometer", "min_raw_value", 90),
    ("at least 3 oscars", "oscar_wins", "min_raw_value", 3),
    ("3+ oscars", "oscar_wins", "min_raw_value", 3),
    ("more than 5 oscar nominations", "oscar_nominations", "min_raw_value", 5),
    ("high metacritic scores", "metacritic_score", "min_raw_value", 75),
    ("poor rotten tomatoes scores", "rt_tomatometer", "max_raw_value", 40),
    ("rated highly on imdb", "imdb_rating", "min_raw_value", 7.5),
    ("rated poorly on tmdb", "tmdb_rating", "max_raw_value", 5.5),
])
def test_metric_phrases(text, code, key, value):
    r = p(text)
    assert r["filters"] == [{"metric_code": code, key: value}], r
    assert r["unparsed"] == []


def test_box_office_gross_is_any_revenue_source():
    r = p("gross above $100 million")
    assert r["filters"] == [{"any": [{"metric_code": "bom_worldwide", "min_raw_value": 100_000_000},
                                     {"metric_code": "tmdb_revenue", "min_raw_value": 100_000_000}]}]


@pytest.mark.parametrize("text,labels", [
    ("westerns", [["Western"]]),
    ("romantic comedies", [["Romantic Comedy"]]),
    ("rom-coms", [["Romantic Comedy"]]),
    ("black comedy", [["Black Comedy"]]),
    ("concert films", [["Concert/Performance"]]),
    ("thrillers", [["Thriller/Suspense", "Thriller"]]),
    ("documentaries", [["Documentary"]]),
    ("science-fiction", [["Science Fiction", "Sci-Fi"]]),
    ("comedies or dramas", [["Comedy", "Drama"]]),
    ("horror, westerns and musicals", [["Horror", "Western", "Musical", "Music"]]),
    ("action comedies", [["Action"], ["Comedy"]]),      # side by side: both must hold
])
def test_genres(text, labels):
    r = p(text)
    assert [f["genre"] for f in r["filters"]] == labels
    assert r["unparsed"] == []


def test_every_genre_word_maps_to_a_label():
    for word, labels in GENRES.items():
        r = p(word)
        assert r["filters"] == [{"genre": labels}], word


def test_unparsed_words_are_reported_in_runs():
    r = p("cult zombie movies from the late 80s with great practical effects")
    assert r["unparsed"] == ["cult zombie", "practical effects"]
    assert {"year_min": 1987, "year_max": 1989} in r["filters"]
    assert {"category": "rating", "min_normalized": 0.8} in r["filters"]


def test_filler_only_and_empty():
    assert p("") == {"filters": [], "recognized": [], "unparsed": []}
    assert p(None) == {"filters": [], "recognized": [], "unparsed": []}
    assert p("show me some movies") == {"filters": [], "recognized": [], "unparsed": []}


def test_hostile_text_is_just_text():
    r = p("'; DROP TABLE reelscore.movies; -- comedies")
    assert {"genre": ["Comedy"]} in r["filters"]
    assert "drop table reelscore.movies" in " ".join(r["unparsed"])


def test_recognized_explains_each_phrase():
    r = p("award-winning dramas since 2010")
    assert any(x.startswith("award-winning -> award") for x in r["recognized"])
    assert any(x.startswith("since 2010 -> year >= 2010") for x in r["recognized"])


def test_duplicate_phrases_do_not_duplicate_filters():
    r = p("comedies, funny comedies")
    assert r["filters"].count({"genre": ["Comedy"]}) == 1


def test_too_long():
    with pytest.raises(ValueError, match=str(MAX_TEXT_LENGTH)):
        p("a" * (MAX_TEXT_LENGTH + 1))


def test_output_has_only_filter_keys():
    allowed = {"category", "metric_code", "min_normalized", "max_normalized", "min_raw_value", "max_raw_value",
               "genre", "year_min", "year_max", "filters", "any"}

    def walk(obj):
        assert set(obj) <= allowed, obj
        for sub in obj.get("filters", []) + obj.get("any", []):
            walk(sub)
    text = ("critically acclaimed award-winning big-budget sci-fi blockbusters from the 80s with imdb rating "
            "above 7 that are popular, obscure, classic, oscar-nominated, palme d'or winners, criterion, trending")
    r = p(text)
    for f in r["filters"]:
        walk(f)
    assert r["unparsed"] == []
