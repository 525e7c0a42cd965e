"""the write path: similarity vectors apart from the features, one index less on values

The HNSW index of similar_movies used to sit on movie_features.nvec. Every feature write
then paid an HNSW insertion (about 2.5 ms a row on this machine): a load of 10,000 changed
values took 25 s instead of 1.2 s, because the loader's transaction rescores the touched
movies. The index now lives on its own table, similarity_vectors, a copy of nvec that
refresh_scores() (the 60-second schedule) brings up to date: movie_features marks rows
whose vector changed (similarity_synced = false) and sync_similarity_vectors() copies
them, in one statement. Neighbour lists therefore lag a value change by at most one
refresh; the query movie's own vector is always read fresh from movie_features.

metric_values_metric (metric_id, raw_value) is dropped: metric_values_metric_value_observed
(0006) has the same keys plus observed_at, serves every query the first served, and each
index costs every loaded row an insertion (a third of the merge's time at 580k rows).

Revision ID: 0013
Revises: 0012
"""
from migrations.helpers import run_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE TABLE reelscore.similarity_vectors (
      movie_id  bigint PRIMARY KEY,
      nvec      vector(32) NOT NULL,          -- movie_features.nvec as of synced_at
      synced_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE reelscore.similarity_vectors IS
      'Copy of movie_features.nvec carrying the HNSW index of similar_movies; synced by sync_similarity_vectors() (refresh_scores calls it)';
    INSERT INTO reelscore.similarity_vectors (movie_id, nvec) SELECT f.movie_id, f.nvec FROM reelscore.movie_features f;
    -- existing rows are synced (true), rows written from now on start unsynced (false)
    ALTER TABLE reelscore.movie_features ADD COLUMN similarity_synced boolean NOT NULL DEFAULT true;
    ALTER TABLE reelscore.movie_features ALTER COLUMN similarity_synced SET DEFAULT false;
    CREATE INDEX movie_features_similarity_unsynced ON reelscore.movie_features (movie_id)
      WHERE NOT similarity_synced;
    DROP INDEX IF EXISTS reelscore.movie_features_nvec_hnsw;
    CREATE INDEX similarity_vectors_hnsw ON reelscore.similarity_vectors
      USING hnsw (nvec vector_l2_ops) WITH (m = 24, ef_construction = 128);
    DROP INDEX IF EXISTS reelscore.metric_values_metric;
    """)


def downgrade() -> None:
    run_sql(r"""
    CREATE INDEX IF NOT EXISTS metric_values_metric ON reelscore.metric_values (metric_id, raw_value);
    DROP TABLE IF EXISTS reelscore.similarity_vectors CASCADE;
    DROP INDEX IF EXISTS reelscore.movie_features_similarity_unsynced;
    ALTER TABLE reelscore.movie_features DROP COLUMN IF EXISTS similarity_synced;
    CREATE INDEX IF NOT EXISTS movie_features_nvec_hnsw ON reelscore.movie_features
      USING hnsw (nvec vector_l2_ops) WITH (m = 24, ef_construction = 128);
    """)
