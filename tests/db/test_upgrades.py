"""Upgrades keep data: from every earlier revision to head on a database holding data, and
downgrade-then-upgrade again."""
import psycopg
import pytest
from alembic.script import ScriptDirectory

from reelscore.commands.migrate import alembic_config
from tests.conftest import migrate


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("postgresql://x@127.0.0.1/x"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def plant_data(url: str, rev: str) -> dict:
    """Write rows into the tables that exist at `rev`; return what must survive."""
    planted = {}
    with psycopg.connect(url, autocommit=True) as c:
        if rev == "0002":
            c.execute("""insert into reelscore.metric_definitions (slot, code, name, category, source, data_type,
                raw_scale_min, raw_scale_max, normalization_type, normalization_params, norm_args)
                values (30, 'letterboxd_rating', 'Letterboxd', 'rating', 'letterboxd', 'numeric', 0, 5,
                        'linear', '{}', '{0,5}')""")
            planted["definitions"] = 30
        if rev == "0003":
            c.execute("insert into reelscore.movies (id, title, release_date) values (1, 'Alien', '1979-05-25'), "
                      "(2, 'Heat', '1995-12-15')")
            c.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
                select 1, id, 8.5 from reelscore.metric_definitions where code = 'imdb_rating'
                union all select 2, id, 4.0 from reelscore.metric_definitions where code = 'letterboxd_rating'""")
            planted["values"] = 2
    return planted


def check_data(url: str, planted: dict) -> None:
    with psycopg.connect(url) as c:
        if "definitions" in planted:
            assert c.execute("select count(*) from reelscore.metric_definitions").fetchone()[0] == 30
            assert c.execute("select reelscore.normalize_value('letterboxd_rating', 2.5)").fetchone()[0] == pytest.approx(0.5)
        if "values" in planted:
            rows = c.execute("""select m.title, d.code, v.raw_value from reelscore.metric_values v
                join reelscore.movies m on m.id = v.movie_id join reelscore.metric_definitions d on d.id = v.metric_id
                order by m.id""").fetchall()
            assert rows == [("Alien", "imdb_rating", 8.5), ("Heat", "letterboxd_rating", 4.0)]


def test_chain_is_linear_and_complete():
    revs = revisions()
    assert revs[0] == "0001" and len(revs) == len(set(revs))


def test_upgrade_from_every_revision_to_head_keeps_data(fresh_db):
    """One database walks the chain up one revision at a time (planting rows as their tables
    appear), then, from head, goes back down to every earlier revision and up to head again:
    each of those is an upgrade from that revision to head on a database holding data."""
    url = fresh_db()
    planted: dict = {}
    revs = revisions()
    for rev in revs:
        migrate(url, rev)
        if rev in ("0002", "0003"):
            fresh = plant_data(url, rev)
            planted.update(fresh)
    check_data(url, planted)
    for rev in reversed(revs[:-1]):
        migrate(url, rev, down=True)
        migrate(url, "head")
        kept = {k: v for k, v in planted.items() if (k == "definitions" and rev >= "0002") or
                (k == "values" and rev >= "0003")}
        check_data(url, kept)
