"""ML models, clusters, experiments

ml_models is the registry of everything ml/ learned (parameters and every evaluation
figure as JSON, no pickles); user clusters keep their centroids as pgvector vectors;
experiments hold the A/B plan (profiles, metrics, split, power-based sample size), the
sticky assignment of users and the recorded outcomes.

Revision ID: 0011
Revises: 0010
"""
from migrations.helpers import run_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE TABLE reelscore.ml_models (
      id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      kind                 text NOT NULL CHECK (kind IN ('weights', 'clusters', 'factors')),
      version              varchar(50) NOT NULL UNIQUE,
      algorithm            text NOT NULL,
      params               jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
      metrics              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
      training_sample_size integer CHECK (training_sample_size >= 0),
      trained_at           timestamptz NOT NULL DEFAULT now(),
      active               boolean NOT NULL DEFAULT false,
      created_by           text NOT NULL DEFAULT session_user,
      notes                text
    );
    CREATE UNIQUE INDEX ml_models_one_active ON reelscore.ml_models (kind) WHERE active;
    COMMENT ON TABLE reelscore.ml_models IS
      'Registry of learned models: parameters and every evaluation figure as JSON; one active model per kind';

    CREATE TABLE reelscore.user_clusters (
      model_id     bigint NOT NULL REFERENCES reelscore.ml_models (id) ON DELETE CASCADE,
      cluster_no   smallint NOT NULL CHECK (cluster_no >= 0),
      label        text NOT NULL,
      description  text NOT NULL,
      centroid     vector NOT NULL,                -- standardized taste-feature space
      centroid_raw double precision[] NOT NULL,    -- the same point in feature units (for reading)
      size         integer NOT NULL CHECK (size >= 0),
      profile_id   bigint REFERENCES reelscore.weight_profiles (id) ON DELETE SET NULL,
      stats        jsonb NOT NULL DEFAULT '{}',
      PRIMARY KEY (model_id, cluster_no)
    );
    COMMENT ON TABLE reelscore.user_clusters IS
      'Taste clusters of a clusters model: centroid (pgvector), words describing it, its learned profile';

    CREATE TABLE reelscore.user_cluster_assignments (
      model_id    bigint NOT NULL,
      user_id     bigint NOT NULL REFERENCES reelscore.users (id) ON DELETE CASCADE,
      cluster_no  smallint NOT NULL,
      distance    double precision NOT NULL,
      source      text NOT NULL DEFAULT 'training' CHECK (source IN ('training', 'assign')),
      assigned_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (model_id, user_id),
      FOREIGN KEY (model_id, cluster_no) REFERENCES reelscore.user_clusters ON DELETE CASCADE
    );
    CREATE INDEX user_cluster_assignments_user ON reelscore.user_cluster_assignments (user_id);
    COMMENT ON TABLE reelscore.user_cluster_assignments IS
      'Which cluster each user belongs to (from training, or assigned later by assign_user_cluster)';

    CREATE TABLE reelscore.experiments (
      id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      name                  varchar(50) NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,49}$'),
      description           text,
      control_profile_id    bigint NOT NULL REFERENCES reelscore.weight_profiles (id),
      experiment_profile_id bigint NOT NULL REFERENCES reelscore.weight_profiles (id),
      primary_metric        text NOT NULL,
      metric_kind           text NOT NULL CHECK (metric_kind IN ('mean', 'proportion')),
      metrics               jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
      traffic_split         double precision NOT NULL DEFAULT 0.5 CHECK (traffic_split > 0 AND traffic_split < 1),
      alpha                 double precision NOT NULL DEFAULT 0.05 CHECK (alpha > 0 AND alpha < 0.5),
      power                 double precision NOT NULL DEFAULT 0.8 CHECK (power > 0.5 AND power < 1),
      mde                   double precision NOT NULL CHECK (mde <> 0),
      baseline              double precision NOT NULL,   -- sd of the metric ('mean') or its rate ('proportion')
      planned_control       integer NOT NULL CHECK (planned_control > 0),
      planned_experiment    integer NOT NULL CHECK (planned_experiment > 0),
      salt                  text NOT NULL,
      status                text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped', 'concluded')),
      result                jsonb,
      created_by            text NOT NULL DEFAULT session_user,
      created_at            timestamptz NOT NULL DEFAULT now(),
      stopped_at            timestamptz,
      CHECK (control_profile_id <> experiment_profile_id)
    );
    COMMENT ON TABLE reelscore.experiments IS
      'A/B tests of two weight profiles: metric, traffic split, planned sample size from a power calculation';

    CREATE TABLE reelscore.experiment_assignments (
      experiment_id bigint NOT NULL REFERENCES reelscore.experiments (id) ON DELETE CASCADE,
      user_id       bigint NOT NULL REFERENCES reelscore.users (id) ON DELETE CASCADE,
      arm           text NOT NULL CHECK (arm IN ('control', 'experiment')),
      assigned_at   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (experiment_id, user_id)
    );
    COMMENT ON TABLE reelscore.experiment_assignments IS 'Sticky arm of each user in each experiment';

    CREATE TABLE reelscore.experiment_outcomes (
      id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      experiment_id bigint NOT NULL,
      user_id       bigint NOT NULL,
      metric        text NOT NULL,
      value         double precision NOT NULL CHECK (value > '-Infinity'::float8 AND value < 'Infinity'::float8),
      movie_id      bigint REFERENCES reelscore.movies (id) ON DELETE SET NULL,
      recorded_at   timestamptz NOT NULL DEFAULT now(),
      FOREIGN KEY (experiment_id, user_id) REFERENCES reelscore.experiment_assignments ON DELETE CASCADE
    );
    CREATE INDEX experiment_outcomes_exp ON reelscore.experiment_outcomes (experiment_id, metric, user_id);
    COMMENT ON TABLE reelscore.experiment_outcomes IS 'Observed outcomes per user of an experiment (one row per event)';
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP TABLE IF EXISTS reelscore.experiment_outcomes, reelscore.experiment_assignments,
      reelscore.experiments, reelscore.user_cluster_assignments, reelscore.user_clusters,
      reelscore.ml_models CASCADE;
    """)
