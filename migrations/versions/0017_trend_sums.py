"""trend candidates: running least-squares sums per (metric, window, movie)

Stage 1 of trending() ranks movies by the least-squares slope of their normalized daily
mean over a window. Recomputing it whole when the window moves to a new day read every
daily row of the windows (6.2M at 100k movies x 30 days x 2 metrics, 17-20 s). With the
sums kept (x an absolute day number, so they stay valid when the window moves), a move
subtracts the day that left the window and a changed movie is recomputed alone;
refresh_trend_candidates() (sql/600-timeseries.sql) maintains both tables, and fills them
on its first run.

Both tables are UNLOGGED: they are derived from ts_rollup_daily, the daily move rewrites
every row (its WAL, full-page images after a checkpoint, doubled the cost of the update), and
after a crash both come back empty together, so the next refresh makes a full pass.

y (the normalized daily mean) is summed as numeric: sums of numeric are exact, so sums
kept by subtracting and adding equal sums computed afresh, and so do the slopes and the
stored candidates.

Revision ID: 0017
Revises: 0016
"""
from migrations.helpers import run_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE UNLOGGED TABLE reelscore.ts_trend_sums (
      metric_id   smallint NOT NULL,
      window_days integer NOT NULL,
      movie_id    bigint NOT NULL,
      days        integer NOT NULL,   -- daily rows in the window
      n           integer NOT NULL,   -- of which with a finite normalized mean: the regression's points
      n_nonfinite integer NOT NULL,   -- with a NaN or infinite one (the slope is then NaN, as regr_slope's)
      sum_x       bigint NOT NULL,    -- x: days since 1970-01-01
      sum_xx      bigint NOT NULL,
      sum_y       numeric NOT NULL,   -- y: the normalized daily mean
      sum_xy      numeric NOT NULL,
      slope       double precision,   -- least-squares slope per day, from the sums; NULL under 2 distinct days
      PRIMARY KEY (metric_id, window_days, movie_id)
    ) WITH (fillfactor = 50);         -- room on the page: the daily move updates every row in place (HOT)
    COMMENT ON TABLE reelscore.ts_trend_sums IS
      'Running least-squares sums of each movie''s normalized daily mean per metric and trend window (ts_trend_windows says which days they cover); stage 1 of trending() ranks by their slope';

    -- Which window each metric's sums cover, and when they were last made whole.
    CREATE UNLOGGED TABLE reelscore.ts_trend_windows (
      metric_id   smallint NOT NULL,
      window_days integer NOT NULL,
      window_from timestamptz NOT NULL,   -- the sums hold the daily rows from this day on
      computed_at timestamptz NOT NULL DEFAULT now(),   -- last full pass (normalization in force then)
      PRIMARY KEY (metric_id, window_days)
    );
    COMMENT ON TABLE reelscore.ts_trend_windows IS
      'Per metric and trend window: the first day the running sums of ts_trend_sums cover, and their last full pass';
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP TABLE IF EXISTS reelscore.ts_trend_sums, reelscore.ts_trend_windows;
    """)
