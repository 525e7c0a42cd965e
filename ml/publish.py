"""Write what was learned back as rows, each publication in one transaction: the model
registry row (parameters and every evaluation figure), profiles through the SQL API
(save_profile), clusters with pgvector centroids and assignments, factors as vectors."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np


def new_version(prefix: str) -> str:
    """A model version: prefix plus the UTC time to the second ('nnls-20261126T071502')."""
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}"


def _json(obj):
    """json.dumps with numpy scalars and arrays converted."""
    def conv(o):
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return None if np.isnan(o) else float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(type(o))
    return json.dumps(obj, default=conv, allow_nan=False)


def register_model(conn, kind: str, version: str, algorithm: str, params: dict, metrics: dict,
                   sample_size: int, notes: str | None = None, activate: bool = True) -> int:
    """Insert a registry row; activating it deactivates the kind's previous model."""
    if activate:
        conn.execute("UPDATE reelscore.ml_models SET active = false WHERE kind = %s AND active", (kind,))
    return conn.execute(
        """INSERT INTO reelscore.ml_models (kind, version, algorithm, params, metrics, training_sample_size, active, notes)
           VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s) RETURNING id""",
        (kind, version, algorithm, _json(params), _json(metrics), int(sample_size), activate, notes)).fetchone()[0]


def save_profile(conn, name: str, category_weights: dict, metric_weights: dict, description: str,
                 ml: dict | None = None, user_id: int | None = None) -> int:
    """reelscore.save_profile(): a new version of the profile, activated. Returns the version."""
    return conn.execute(
        "SELECT reelscore.save_profile(%s, %s::jsonb, %s::jsonb, %s, NULL, %s, %s::jsonb, true)",
        (name, _json(category_weights), _json(metric_weights), description, user_id,
         _json(ml) if ml is not None else None)).fetchone()[0]


def publish_clusters(conn, model_id: int, clusters: list[dict], assignments: list[tuple[int, int, float]],
                     model_version: str) -> None:
    """user_clusters rows (centroid as a pgvector vector), the training assignments, and the
    cluster profile of every assigned user in user_profile_assignments (source 'cluster')."""
    for c in clusters:
        conn.execute(
            """INSERT INTO reelscore.user_clusters (model_id, cluster_no, label, description, centroid,
                                                     centroid_raw, size, profile_id, stats)
               VALUES (%s, %s, %s, %s, %s::real[]::vector, %s, %s,
                       (SELECT id FROM reelscore.weight_profiles WHERE name = %s), %s::jsonb)""",
            (model_id, c["cluster_no"], c["label"], c["description"], [float(x) for x in c["centroid"]],
             [float(x) for x in c["centroid_raw"]], c["size"], c.get("profile"), _json(c.get("stats", {}))))
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE ml_assign_in (user_id bigint, cluster_no smallint, distance float8) ON COMMIT DROP")
        with cur.copy("COPY ml_assign_in FROM STDIN") as cp:
            for uid, cno, dist in assignments:
                cp.write_row((int(uid), int(cno), float(dist)))
        cur.execute("""INSERT INTO reelscore.user_cluster_assignments (model_id, user_id, cluster_no, distance, source)
                       SELECT %s, user_id, cluster_no, distance, 'training' FROM ml_assign_in""", (model_id,))
        cur.execute("DELETE FROM reelscore.user_profile_assignments WHERE source = 'cluster'")
        cur.execute("""INSERT INTO reelscore.user_profile_assignments (user_id, profile_id, source, model_version)
                       SELECT a.user_id, c.profile_id, 'cluster', %s
                         FROM ml_assign_in a JOIN reelscore.user_clusters c
                           ON c.model_id = %s AND c.cluster_no = a.cluster_no
                        WHERE c.profile_id IS NOT NULL""", (model_version, model_id))


def publish_factors(conn, model_id: int, users: list[tuple[int, np.ndarray, float, int]],
                    movies: list[tuple[int, np.ndarray, float, int, str]]) -> None:
    """Replace user_factors and movie_factors with this model's vectors.
    users: (user_id, [p_u, 1], mu + b_u, n); movies: (movie_id, [q_i, b_i], b_i, n, source)."""
    with conn.cursor() as cur:
        # TRUNCATE, not DELETE: deleted rows would stay in the HNSW graph until VACUUM and
        # every search would wade through the previous model's vectors (recall fell to 0.95)
        cur.execute("TRUNCATE reelscore.user_factors, reelscore.movie_factors")
        with cur.copy("COPY reelscore.user_factors (user_id, model_id, factors, bias, n_ratings) FROM STDIN") as cp:
            for uid, vec, bias, n in users:
                cp.write_row((int(uid), model_id, "[" + ",".join(f"{x:.7g}" for x in vec) + "]", float(bias), int(n)))
        with cur.copy("COPY reelscore.movie_factors (movie_id, model_id, factors, bias, n_ratings, source) FROM STDIN") as cp:
            for mid, vec, bias, n, source in movies:
                cp.write_row((int(mid), model_id, "[" + ",".join(f"{x:.7g}" for x in vec) + "]", float(bias),
                              int(n), source))
        cur.execute("ANALYZE reelscore.user_factors")
        cur.execute("ANALYZE reelscore.movie_factors")
