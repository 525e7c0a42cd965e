"""time-series rollups: hourly and daily partial state (count, sum, sum of squares, min, max,
last) per movie and metric, refreshed for a recent window by reelscore.refresh_rollups()
(sql/600-timeseries.sql); settings and refresh state; the rollup path detected at install.

Revision ID: 0007
Revises: 0006
"""
from migrations.helpers import run_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ROLLUP = """
    CREATE TABLE reelscore.{name} (
      metric_id   smallint NOT NULL,   -- no foreign key: per-row checks would dominate the refresh
      bucket      timestamptz NOT NULL,
      movie_id    bigint NOT NULL,
      n           bigint NOT NULL,
      sum_value   double precision NOT NULL,
      sumsq_value double precision NOT NULL,
      min_value   double precision NOT NULL,
      max_value   double precision NOT NULL,
      last_value  double precision NOT NULL,
      last_time   timestamptz NOT NULL,
      PRIMARY KEY (metric_id, bucket, movie_id)
    );
    CREATE INDEX {name}_movie ON reelscore.{name} (movie_id, metric_id, bucket);
"""


def upgrade() -> None:
    run_sql(_ROLLUP.format(name="ts_rollup_hourly") + _ROLLUP.format(name="ts_rollup_daily") + r"""
    COMMENT ON TABLE reelscore.ts_rollup_hourly IS
      'Hourly partial state of metric_timeseries per movie and metric (n, sum, sum of squares, min, max, last)';
    COMMENT ON TABLE reelscore.ts_rollup_daily IS
      'Daily partial state, rolled up from ts_rollup_hourly (weekly rolls up from this)';

    -- One row: retention and refresh settings, refresh state, and the install-time path.
    CREATE TABLE reelscore.ts_settings (
      id                     boolean PRIMARY KEY DEFAULT true CHECK (id),
      refresh_window         interval NOT NULL DEFAULT '2 days' CHECK (refresh_window > interval '0'),
      raw_retention          interval CHECK (raw_retention > interval '1 hour'),
      refreshed_from         timestamptz,   -- earliest hour the last refresh recomputed
      refreshed_through      timestamptz,   -- raw points before this are rolled up
      raw_retained_from      timestamptz,   -- raw points before this were dropped by retention
      last_refresh_at        timestamptz,
      last_refresh_ms        double precision,
      -- trending(): windows (days) whose least-squares pre-ranking refresh_rollups stores,
      -- and how many candidates per metric and window it keeps.
      trend_windows          integer[] NOT NULL DEFAULT '{7,30}',
      trend_candidates       integer NOT NULL DEFAULT 2000 CHECK (trend_candidates BETWEEN 10 AND 100000),
      rollup_path            text NOT NULL
    );

    -- Stage 1 of trending(), precomputed by refresh_rollups: per metric and window, the
    -- movies with the steepest least-squares slope of the normalized daily mean.
    CREATE TABLE reelscore.ts_trend_candidates (
      metric_id     smallint NOT NULL,
      window_days   integer NOT NULL,
      movie_id      bigint NOT NULL,
      ols_slope     double precision NOT NULL,
      days          integer NOT NULL,
      window_from   timestamptz NOT NULL,
      computed_at   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (metric_id, window_days, movie_id)
    );
    CREATE INDEX ts_trend_candidates_rank ON reelscore.ts_trend_candidates (metric_id, window_days, ols_slope DESC);
    -- Continuous aggregates need TimescaleDB's TSL build; the Apache build (and plain
    -- PostgreSQL) take the portable path: tables of partial state refreshed for a window.
    INSERT INTO reelscore.ts_settings (rollup_path)
    SELECT CASE
      WHEN NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
        THEN 'tables over date_bin buckets (TimescaleDB not installed), refreshed for the recent window'
      WHEN current_setting('timescaledb.license', true) = 'timescale'
        THEN 'tables over time_bucket (TimescaleDB TSL present: continuous aggregates possible, not used)'
      ELSE 'tables over time_bucket (TimescaleDB Apache build: no continuous aggregates), refreshed for the recent window'
    END;
    DO $$ BEGIN
      RAISE NOTICE 'rollups: %', (SELECT rollup_path FROM reelscore.ts_settings);
    END $$;
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP TABLE IF EXISTS reelscore.ts_trend_candidates, reelscore.ts_settings, reelscore.ts_rollup_daily, reelscore.ts_rollup_hourly CASCADE;
    """)
