"""collaborative filtering factors

Biased matrix factorization r = mu + b_u + b_i + p_u . q_i stored so that one inner
product ranks: movie vector [q_i, b_i], user vector [p_u, 1] (32 factors + 1), and
prediction = mu + b_u + <user, movie>. HNSW index (inner product) on the movie vectors.

Revision ID: 0012
Revises: 0011
"""
from migrations.helpers import run_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE TABLE reelscore.movie_factors (
      movie_id  bigint PRIMARY KEY REFERENCES reelscore.movies (id) ON DELETE CASCADE,
      model_id  bigint NOT NULL REFERENCES reelscore.ml_models (id) ON DELETE CASCADE,
      factors   vector(33) NOT NULL,          -- [q_i (31), equal-norm component, b_i]
      bias      double precision NOT NULL,    -- b_i (also the last component of factors)
      n_ratings integer NOT NULL DEFAULT 0,   -- training ratings; 0 for a movie placed by its metrics
      source    text NOT NULL CHECK (source IN ('ratings', 'metrics'))
    );
    CREATE INDEX movie_factors_hnsw ON reelscore.movie_factors USING hnsw (factors vector_ip_ops);
    COMMENT ON TABLE reelscore.movie_factors IS
      'Movie factors of the active factors model: [q_i, b_i]; movies without ratings are placed from their metric vector';

    CREATE TABLE reelscore.user_factors (
      user_id   bigint PRIMARY KEY REFERENCES reelscore.users (id) ON DELETE CASCADE,
      model_id  bigint NOT NULL REFERENCES reelscore.ml_models (id) ON DELETE CASCADE,
      factors   vector(33) NOT NULL,          -- [p_u (31), 0, 1]
      bias      double precision NOT NULL,    -- mu + b_u: add to the inner product to get the rating
      n_ratings integer NOT NULL DEFAULT 0
    );
    COMMENT ON TABLE reelscore.user_factors IS
      'User factors of the active factors model: [p_u, 0, 1] and mu + b_u';

    -- recommend() skips what the user has rated: one index probe per candidate.
    CREATE INDEX IF NOT EXISTS metric_feedback_user_movie ON reelscore.metric_feedback (user_id, movie_id);
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP INDEX IF EXISTS reelscore.metric_feedback_user_movie;
    DROP TABLE IF EXISTS reelscore.user_factors, reelscore.movie_factors CASCADE;
    """)
