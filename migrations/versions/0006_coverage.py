"""coverage snapshots: one row per refresh run, the seed's metric_coverage_stats per metric,
coverage by category / source / overall, and the heatmap data set (coverage of each
metric by release decade). Written only by reelscore.refresh_coverage() (sql/500-coverage.sql).

Revision ID: 0006
Revises: 0005
"""
from migrations.helpers import run_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    -- The per-metric pass of refresh_coverage: count, mean, min, max, median and freshness
    -- (stale count, oldest and newest observation) in one index-only scan, already in the
    -- order the median needs.
    CREATE INDEX metric_values_metric_value_observed ON reelscore.metric_values (metric_id, raw_value)
      INCLUDE (observed_at);

    -- One row per refresh: the snapshot every other coverage row belongs to.
    CREATE TABLE reelscore.coverage_snapshots (
      id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      taken_at         timestamptz NOT NULL DEFAULT clock_timestamp() UNIQUE,
      total_movies     integer NOT NULL,
      movies_with_data integer NOT NULL,     -- movies with at least one value of an active metric
      value_count      bigint NOT NULL,      -- metric_values rows of active metrics
      duration_ms      double precision,
      taken_by         text NOT NULL DEFAULT session_user
    );
    COMMENT ON TABLE reelscore.coverage_snapshots IS
      'One row per coverage refresh (reelscore.refresh_coverage()); thinned as it ages';

    -- The seed's table, one row per metric and snapshot (coverage_percentage is 0..100;
    -- metric_definitions.coverage_threshold is a fraction 0..1).
    CREATE TABLE reelscore.metric_coverage_stats (
      id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      snapshot_id         bigint NOT NULL REFERENCES reelscore.coverage_snapshots (id) ON DELETE CASCADE,
      metric_id           smallint NOT NULL REFERENCES reelscore.metric_definitions (id) ON DELETE CASCADE,
      metric_code         varchar(50) NOT NULL REFERENCES reelscore.metric_definitions (code)
                          ON UPDATE CASCADE ON DELETE CASCADE,
      total_movies        integer NOT NULL,
      movies_with_data    integer NOT NULL,
      coverage_percentage double precision NOT NULL CHECK (coverage_percentage BETWEEN 0 AND 100),
      avg_value           double precision,
      min_value           double precision,
      max_value           double precision,
      median_value        double precision,
      -- Freshness at refresh time: values observed more than freshness_days before the refresh.
      stale_movies        integer NOT NULL DEFAULT 0,
      oldest_observed_at  timestamptz,
      newest_observed_at  timestamptz,
      last_calculated     timestamptz NOT NULL DEFAULT now(),
      UNIQUE (metric_code, last_calculated),
      UNIQUE (snapshot_id, metric_id)
    );
    CREATE INDEX idx_coverage_stats_metric ON reelscore.metric_coverage_stats (metric_id, last_calculated DESC);
    CREATE INDEX idx_coverage_stats_date ON reelscore.metric_coverage_stats (last_calculated);
    COMMENT ON TABLE reelscore.metric_coverage_stats IS
      'Coverage and value statistics per metric, one row per refresh snapshot (the seed''s table)';

    -- Coverage of groups of metrics: a movie counts once it has any metric of the group.
    CREATE TABLE reelscore.coverage_group_stats (
      snapshot_id         bigint NOT NULL REFERENCES reelscore.coverage_snapshots (id) ON DELETE CASCADE,
      dimension           text NOT NULL CHECK (dimension IN ('overall', 'category', 'source')),
      group_name          text NOT NULL,
      metric_count        integer NOT NULL,
      total_movies        integer NOT NULL,
      movies_with_data    integer NOT NULL,
      coverage_percentage double precision NOT NULL CHECK (coverage_percentage BETWEEN 0 AND 100),
      PRIMARY KEY (snapshot_id, dimension, group_name)
    );
    COMMENT ON TABLE reelscore.coverage_group_stats IS
      'Coverage per category, per source and overall (any active metric), per refresh snapshot';

    -- Heatmap data set: coverage of each metric by a movie dimension (release decade).
    CREATE TABLE reelscore.coverage_heatmap (
      snapshot_id         bigint NOT NULL REFERENCES reelscore.coverage_snapshots (id) ON DELETE CASCADE,
      dimension           text NOT NULL,
      bucket              text NOT NULL,        -- e.g. '1990s', or 'unknown'
      bucket_order        integer NOT NULL,     -- sort key (the decade's first year; unknown last)
      metric_id           smallint NOT NULL REFERENCES reelscore.metric_definitions (id) ON DELETE CASCADE,
      total_movies        integer NOT NULL,
      movies_with_data    integer NOT NULL,
      PRIMARY KEY (snapshot_id, dimension, bucket, metric_id)
    );
    COMMENT ON TABLE reelscore.coverage_heatmap IS
      'Coverage of each metric by release decade, per refresh snapshot (the panel''s heatmap)';
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP INDEX IF EXISTS reelscore.metric_values_metric_value_observed;
    DROP TABLE IF EXISTS reelscore.coverage_heatmap, reelscore.coverage_group_stats,
      reelscore.metric_coverage_stats, reelscore.coverage_snapshots CASCADE;
    """)
