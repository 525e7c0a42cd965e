"""Weight profiles: seeded system profiles, validation, protection, versions, activations,
rollback, history written by the database, user resolution."""
from __future__ import annotations

import json

import psycopg
import pytest

SYSTEM = ["balanced", "crowd_pleaser", "critics_choice", "award_seeker", "hidden_gems"]
CATS = ["rating", "award", "financial", "cultural", "popularity"]


def history(conn, name, since=0):
    return conn.execute("""SELECT id, target, operation, changed_by, change_reason, old_values, new_values
                           FROM reelscore.weight_profile_history WHERE profile_name = %s AND id > %s ORDER BY id""",
                        (name, since)).fetchall()


def last_history_id(conn):
    return conn.execute("SELECT coalesce(max(id), 0) FROM reelscore.weight_profile_history").fetchone()[0]


def test_system_profiles_are_seeded_with_descriptions(conn):
    rows = conn.execute("""SELECT name, description, is_system, rating_weight + award_weight + financial_weight
                                  + cultural_weight + popularity_weight, current_version, is_default
                           FROM reelscore.weight_profiles ORDER BY id""").fetchall()
    assert [r[0] for r in rows[:5]] == SYSTEM
    for name, desc, system, total, version, _ in rows[:5]:
        assert system and len(desc) > 40 and desc.startswith("Favours") or name == "balanced"
        assert total == pytest.approx(1.0)
        assert version == 1
    assert [r[0] for r in rows if r[5]] == ["balanced"]
    # each has a version 1 snapshot and a 'create' activation
    n = conn.execute("""SELECT count(*) FROM reelscore.weight_profile_versions v
                        JOIN reelscore.weight_profile_activations a USING (profile_id, version)
                        WHERE a.action = 'create'""").fetchone()[0]
    assert n == 5


@pytest.mark.parametrize("statement", [
    "UPDATE reelscore.weight_profiles SET description = 'mine now' WHERE name = 'critics_choice'",
    "UPDATE reelscore.weight_profiles SET active = false WHERE name = 'balanced'",
    "DELETE FROM reelscore.weight_profiles WHERE name = 'hidden_gems'",
    "UPDATE reelscore.profile_metric_weights SET weight = 9 WHERE profile_id = reelscore.profile_id('critics_choice')",
    ("INSERT INTO reelscore.profile_metric_weights (profile_id, metric_code, weight) "
     "VALUES (reelscore.profile_id('balanced'), 'imdb_rating', 3)"),
    """SELECT reelscore.save_profile('award_seeker', '{"award": 1}')""",
    "SELECT reelscore.activate_profile_version('balanced', 1)",
    ("INSERT INTO reelscore.weight_profiles (name, is_system, rating_weight, award_weight, financial_weight, "
     "cultural_weight) VALUES ('fake_system', true, 1, 0, 0, 0)"),
])
def test_system_profiles_reject_edits(conn, statement):
    before = conn.execute("SELECT count(*) FROM reelscore.weight_profile_history").fetchone()[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="system profile"):
        conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM reelscore.weight_profile_history").fetchone()[0] == before


@pytest.mark.parametrize("cats, errtype, message", [
    ({"rating": 0.5, "award": 0.4}, psycopg.errors.CheckViolation, r"sum to 0\.900000, not 1"),
    ({"rating": 0.7, "award": 0.7, "financial": -0.4}, psycopg.errors.InvalidParameterValue, "financial"),
    ({"rating": 0.5, "awards": 0.5}, psycopg.errors.InvalidParameterValue, "unknown category in weights: 'awards'"),
    ({"rating": "high"}, psycopg.errors.InvalidParameterValue, "rating must be a number"),
])
def test_save_profile_validates_category_weights(conn, cats, errtype, message):
    with pytest.raises(errtype, match=message):
        conn.execute("SELECT reelscore.save_profile('bad', %s)", (json.dumps(cats),))
    assert conn.execute("SELECT count(*) FROM reelscore.weight_profiles WHERE name = 'bad'").fetchone()[0] == 0


def test_direct_update_names_the_sum(conn):
    conn.execute("""SELECT reelscore.save_profile('summed', '{"rating": 1}')""")
    with pytest.raises(psycopg.errors.CheckViolation, match=r"'summed' sum to 1\.300000, not 1"):
        conn.execute("UPDATE reelscore.weight_profiles SET award_weight = 0.3 WHERE name = 'summed'")


@pytest.mark.parametrize("metrics, message", [
    ({"imdb_score": 1}, "unknown metric in weights: 'imdb_score'"),
    ({"imdb_rating": -2}, "finite number >= 0"),
    ({"imdb_rating": {"weight": 1, "on": True}}, "unknown keys: on"),
])
def test_save_profile_validates_metric_weights(conn, metrics, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute("""SELECT reelscore.save_profile('badm', '{"rating": 1}', %s)""", (json.dumps(metrics),))


@pytest.mark.parametrize("config, message", [
    ({"invert": ["nope"]}, "unknown metric in config.invert"),
    ({"shrinkage": {"imdb_rating": {"votes": "imdb_vote_count"}}}, "m must be a number > 0"),
    ({"min_confidence": 2}, "min_confidence"),
    ({"colour": "red"}, "unknown profile config key: 'colour'"),
])
def test_save_profile_validates_config(conn, config, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute("""SELECT reelscore.save_profile('badc', '{"rating": 1}', NULL, NULL, %s)""",
                     (json.dumps(config),))


def test_versions_activation_and_rollback(conn):
    conn.execute("SELECT set_config('reelscore.actor', 'carol', false), set_config('reelscore.reason', 'tuning', false)")
    v1 = conn.execute("""SELECT reelscore.save_profile('tuned', '{"rating": 0.5, "award": 0.5}',
                         '{"imdb_rating": 2}', 'first cut')""").fetchone()[0]
    v2 = conn.execute("""SELECT reelscore.save_profile('tuned', '{"rating": 0.8, "award": 0.2}')""").fetchone()[0]
    same = conn.execute("""SELECT reelscore.save_profile('tuned', '{"rating": 0.8, "award": 0.2}')""").fetchone()[0]
    assert (v1, v2, same) == (1, 2, 2)   # no change, no version
    pid = conn.execute("SELECT reelscore.profile_id('tuned')").fetchone()[0]
    # the metric weights were kept (NULL keeps them)
    assert conn.execute("SELECT metric_weights FROM reelscore.weight_profile_versions WHERE profile_id = %s "
                        "AND version = 2", (pid,)).fetchone()[0] == {"imdb_rating": {"weight": 2.0, "enabled": True}}
    # saved without activating: stored, not scoring
    v3 = conn.execute("""SELECT reelscore.save_profile('tuned', '{"rating": 0.1, "award": 0.9}',
                         p_activate => false)""").fetchone()[0]
    assert v3 == 3
    assert conn.execute("SELECT current_version, rating_weight FROM reelscore.weight_profiles WHERE id = %s",
                        (pid,)).fetchone() == (2, 0.8)
    assert conn.execute("SELECT reelscore.activate_profile_version('tuned', 3)").fetchone()[0] == 3
    assert conn.execute("SELECT rating_weight FROM reelscore.weight_profiles WHERE id = %s", (pid,)).fetchone()[0] == 0.1
    # roll back to v1: a new activation row, the mirror equals v1 again (metric weights included)
    assert conn.execute("SELECT reelscore.activate_profile_version('tuned', 1)").fetchone()[0] == 1
    acts = conn.execute("SELECT version, action, activated_by, reason FROM reelscore.weight_profile_activations "
                        "WHERE profile_id = %s ORDER BY id", (pid,)).fetchall()
    assert acts == [(1, "create", "carol", "tuning"), (2, "save", "carol", "tuning"),
                    (3, "activate", "carol", "tuning"), (1, "rollback", "carol", "tuning")]
    assert conn.execute("SELECT reelscore.profile_snapshot(%s) = reelscore.version_snapshot(%s, 1)",
                        (pid, pid)).fetchone()[0]
    # rollback_profile goes back to the version active before
    assert conn.execute("SELECT reelscore.rollback_profile('tuned')").fetchone()[0] == 3
    # scores name the version they were computed with
    assert conn.execute("SELECT profile_version FROM reelscore.profile_score_state WHERE profile_id = %s",
                        (pid,)).fetchone()[0] == 3
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="has no version 9"):
        conn.execute("SELECT reelscore.activate_profile_version('tuned', 9)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown weight profile: 'nope'"):
        conn.execute("SELECT reelscore.activate_profile_version('nope', 1)")


def test_versions_and_activations_are_immutable(conn):
    conn.execute("""SELECT reelscore.save_profile('frozen', '{"rating": 1}')""")
    for stmt in ["UPDATE reelscore.weight_profile_versions SET rating_weight = 0.5",
                 "DELETE FROM reelscore.weight_profile_versions WHERE profile_id = reelscore.profile_id('frozen')",
                 "UPDATE reelscore.weight_profile_activations SET version = 1",
                 "DELETE FROM reelscore.weight_profile_activations"]:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="append-only"):
            conn.execute(stmt)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="set by activation"):
        conn.execute("UPDATE reelscore.weight_profiles SET current_version = 7 WHERE name = 'frozen'")
    # deleting the profile takes its versions with it, and the history keeps the record
    conn.execute("DELETE FROM reelscore.weight_profiles WHERE name = 'frozen'")
    assert conn.execute("SELECT count(*) FROM reelscore.weight_profile_versions v WHERE NOT EXISTS "
                        "(SELECT 1 FROM reelscore.weight_profiles p WHERE p.id = v.profile_id)").fetchone()[0] == 0
    assert history(conn, "frozen")[-1][2] == "DELETE"


def test_direct_edits_become_one_version_per_transaction(conn):
    conn.execute("""SELECT reelscore.save_profile('direct', '{"rating": 0.5, "award": 0.5}')""")
    with conn.transaction():
        conn.execute("UPDATE reelscore.weight_profiles SET rating_weight = 0.6, award_weight = 0.4 WHERE name = 'direct'")
        conn.execute("INSERT INTO reelscore.profile_metric_weights (profile_id, metric_code, weight) "
                     "VALUES (reelscore.profile_id('direct'), 'metacritic_score', 3)")
        conn.execute("INSERT INTO reelscore.profile_metric_weights (profile_id, metric_code, weight, enabled) "
                     "VALUES (reelscore.profile_id('direct'), 'oscar_wins', 1, false)")
    row = conn.execute("""SELECT p.current_version, v.rating_weight, v.metric_weights
                          FROM reelscore.weight_profiles p JOIN reelscore.weight_profile_versions v
                          ON v.profile_id = p.id AND v.version = p.current_version WHERE p.name = 'direct'""").fetchone()
    assert row == (2, 0.6, {"metacritic_score": {"weight": 3.0, "enabled": True},
                            "oscar_wins": {"weight": 1.0, "enabled": False}})
    # a direct INSERT of a profile (e.g. by ml/) gets version 1 at commit
    conn.execute("""INSERT INTO reelscore.weight_profiles (name, rating_weight, award_weight, financial_weight,
                    cultural_weight, popularity_weight, ml_model_version, ml_model_accuracy)
                    VALUES ('learned', 0.4, 0.1, 0.2, 0.2, 0.1, 'ridge-7', 0.81)""")
    assert conn.execute("""SELECT p.current_version, v.ml_model_version FROM reelscore.weight_profiles p
                           JOIN reelscore.weight_profile_versions v ON v.profile_id = p.id AND v.version = 1
                           WHERE p.name = 'learned'""").fetchone() == (1, "ridge-7")


def test_history_records_every_change_with_who_and_why(conn):
    since = last_history_id(conn)
    conn.execute("SELECT set_config('reelscore.actor', 'dave', false), set_config('reelscore.reason', 'ticket 42', false)")
    conn.execute("""SELECT reelscore.save_profile('audited', '{"rating": 0.5, "cultural": 0.5}', '{"afi_top_100": 2}')""")
    conn.execute("SELECT set_config('reelscore.actor', 'erin', false), set_config('reelscore.reason', 'direct', false)")
    conn.execute("UPDATE reelscore.profile_metric_weights SET weight = 4 WHERE metric_code = 'afi_top_100' "
                 "AND profile_id = reelscore.profile_id('audited')")
    conn.execute("UPDATE reelscore.weight_profiles SET description = 'now described' WHERE name = 'audited'")
    conn.execute("DELETE FROM reelscore.profile_metric_weights WHERE profile_id = reelscore.profile_id('audited')")
    rows = history(conn, "audited", since)
    kinds = [(r[1], r[2], r[3]) for r in rows]
    assert ("profile", "INSERT", "dave") in kinds
    assert ("metric_weight", "INSERT", "dave") in kinds
    assert ("activation", "INSERT", "dave") in kinds
    upd = [r for r in rows if r[1] == "metric_weight" and r[2] == "UPDATE"]
    assert len(upd) == 1 and upd[0][3] == "erin" and upd[0][4] == "direct"
    assert upd[0][5]["weight"] == 2.0 and upd[0][6]["weight"] == 4.0
    desc = [r for r in rows if r[1] == "profile" and r[2] == "UPDATE" and r[6]["description"] == "now described"]
    assert desc and desc[0][5]["description"] is None
    assert any(r[1] == "metric_weight" and r[2] == "DELETE" and r[5]["metric_code"] == "afi_top_100" for r in rows)
    # every direct change made a version, each with its activation in the history
    assert conn.execute("SELECT current_version FROM reelscore.weight_profiles WHERE name = 'audited'").fetchone()[0] == 4
    assert sum(1 for r in rows if r[1] == "activation") == 4


def test_effective_weights_match_definition(conn):
    conn.execute("""SELECT reelscore.save_profile('eff', '{"rating": 0.6, "award": 0.4}',
                    '{"imdb_rating": 3, "tmdb_rating": {"weight": 1, "enabled": false}}')""")
    defs = dict(conn.execute("SELECT code, normalized_weight FROM reelscore.metric_definitions "
                             "WHERE category = 'rating' AND active").fetchall())
    defs["imdb_rating"] = 3.0
    defs["tmdb_rating"] = 0.0
    total = sum(defs.values())
    rows = {r[1]: r for r in conn.execute("SELECT * FROM reelscore.profile_effective_weights('eff')")}
    for code, w in defs.items():
        assert rows[code][3] == pytest.approx(w / total)
        assert rows[code][4] == pytest.approx(0.6 * w / total)
    assert sum(r[4] for r in rows.values()) == pytest.approx(1.0)
    assert all(r[4] == 0 for r in rows.values() if r[0] in ("financial", "cultural", "popularity"))


def test_resolve_user_profile(conn):
    conn.execute("INSERT INTO reelscore.users (id, username) VALUES (71, 'own'), (72, 'clustered'), (73, 'none')")
    conn.execute("""SELECT reelscore.save_profile('own_profile', '{"rating": 1}', p_user_id => 71)""")
    conn.execute("""INSERT INTO reelscore.user_profile_assignments (user_id, profile_id, source, model_version)
                    VALUES (72, reelscore.profile_id('crowd_pleaser'), 'cluster', 'kmeans-3'),
                           (71, reelscore.profile_id('award_seeker'), 'cluster', 'kmeans-3')""")
    got = conn.execute("SELECT reelscore.resolve_user_profile(71), reelscore.resolve_user_profile(72), "
                       "reelscore.resolve_user_profile(73)").fetchone()
    assert got == ("own_profile", "crowd_pleaser", "balanced")
    conn.execute("""INSERT INTO reelscore.user_profile_assignments (user_id, profile_id, source)
                    VALUES (72, reelscore.profile_id('critics_choice'), 'manual')""")
    assert conn.execute("SELECT reelscore.resolve_user_profile(72)").fetchone()[0] == "critics_choice"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="belongs to user 71"):
        conn.execute("""SELECT reelscore.save_profile('own_profile', '{"rating": 1}', p_user_id => 73)""")


def test_feedback_references_profiles(conn):
    conn.execute("INSERT INTO reelscore.users (id, username) VALUES (81, 'fb') ON CONFLICT DO NOTHING")
    conn.execute("INSERT INTO reelscore.movies (id, title) VALUES (8101, 'FB film') ON CONFLICT DO NOTHING")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO reelscore.metric_feedback (user_id, movie_id, profile_id) VALUES (81, 8101, 999999)")
    conn.execute("INSERT INTO reelscore.metric_feedback (user_id, movie_id, profile_id) "
                 "VALUES (81, 8101, reelscore.profile_id('balanced'))")


def test_admin_role_edits_read_role_cannot(conn, role_conn):
    admin = role_conn("admin")
    admin.execute("""SELECT reelscore.save_profile('by_admin', '{"rating": 0.5, "financial": 0.5}')""")
    admin.execute("SELECT reelscore.activate_profile_version('by_admin', 1)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("UPDATE reelscore.weight_profiles SET description = 'x' WHERE name = 'balanced'")
    read = role_conn("read")
    assert read.execute("SELECT count(*) FROM reelscore.profile_effective_weights('by_admin')").fetchone()[0] == 29
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        read.execute("UPDATE reelscore.weight_profiles SET description = 'x' WHERE name = 'by_admin'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        read.execute("INSERT INTO reelscore.weight_profile_history (profile_id, target, operation, changed_by) "
                     "VALUES (1, 'profile', 'UPDATE', 'forger')")


def test_deactivated_profile_loses_its_precomputed_scores(conn):
    conn.execute("""SELECT reelscore.save_profile('retiring', '{"rating": 1}')""")
    pid = conn.execute("SELECT reelscore.profile_id('retiring')").fetchone()[0]
    assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"reelscore.movie_scores_p{pid}",)).fetchone()[0]
    conn.execute("UPDATE reelscore.weight_profiles SET active = false WHERE id = %s", (pid,))
    assert conn.execute("SELECT needs_full_rescore FROM reelscore.score_staleness WHERE profile_id = %s",
                        (pid,)).fetchone()[0]
    conn.execute("SELECT * FROM reelscore.refresh_scores()")
    assert conn.execute("SELECT to_regclass(%s) IS NULL", (f"reelscore.movie_scores_p{pid}",)).fetchone()[0]
    assert not conn.execute("SELECT needs_full_rescore FROM reelscore.score_staleness WHERE profile_id = %s",
                            (pid,)).fetchone()[0]
