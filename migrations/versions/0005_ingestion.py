"""ingestion: the legacy "scattered" source shape (a movies table with ratings, budget and
revenue in a JSONB column; festival results in their own table) that
reelscore.migrate_legacy() moves into movies and metric_values. The bulk path's staging
table is a per-session temp table created by reelscore.begin_load() (sql/200-ingest.sql),
so it needs no table here.

metric_values' two foreign keys are replaced by statement-level triggers (sql/200-ingest.sql,
metric_values_check_refs and metric_values_referenced) with the same guarantees: a foreign
key runs one check query per inserted row, which cost most of a bulk merge's time.

Revision ID: 0005
Revises: 0004
"""
from migrations.helpers import run_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    -- Checked per statement by triggers instead (sql/200-ingest.sql), see the docstring.
    ALTER TABLE reelscore.metric_values DROP CONSTRAINT IF EXISTS metric_values_movie_id_fkey,
                                        DROP CONSTRAINT IF EXISTS metric_values_metric_id_fkey;
    -- The old application's movies: metrics scattered in one JSONB column, e.g.
    -- {"tmdb": {"vote_average": 8.3, "vote_count": 31000, "popularity": 83.9,
    --           "budget": 160000000, "revenue": 836800000},
    --  "omdb": {"imdbRating": "8.8", "imdbVotes": "2,400,000", "Metascore": "74",
    --           "Ratings": [{"Source": "Rotten Tomatoes", "Value": "87%"}], "BoxOffice": "$292,587,330"},
    --  "financials": {"budget": 160000000, "revenue": 836800000, "box_office": "$292,587,330"}}
    CREATE TABLE reelscore.legacy_movies (
      id                bigint PRIMARY KEY,
      title             text NOT NULL,
      release_date      date,
      tmdb_id           integer,
      imdb_id           text,
      external_data     jsonb NOT NULL DEFAULT '{}',
      migrated_movie_id bigint REFERENCES reelscore.movies (id) ON DELETE SET NULL,
      migrated_at       timestamptz
    );
    COMMENT ON TABLE reelscore.legacy_movies IS
      'Legacy shape: movies with ratings, budget and revenue scattered in a JSONB column (migrate with reelscore.migrate_legacy())';

    -- The old application's festival tables: one row per nomination or selection.
    CREATE TABLE reelscore.legacy_festival_results (
      id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      legacy_movie_id bigint NOT NULL REFERENCES reelscore.legacy_movies (id) ON DELETE CASCADE,
      festival        text NOT NULL,      -- oscars, cannes, venice, berlin, sundance
      ceremony_year   integer,
      category        text NOT NULL,      -- 'Best Picture', 'Palme d''Or', 'Golden Lion', 'Competition', ...
      won             boolean NOT NULL DEFAULT false
    );
    CREATE INDEX legacy_festival_results_movie ON reelscore.legacy_festival_results (legacy_movie_id);
    COMMENT ON TABLE reelscore.legacy_festival_results IS
      'Legacy shape: festival and award results in their own table (migrated by reelscore.migrate_legacy())';
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP TABLE IF EXISTS reelscore.legacy_festival_results, reelscore.legacy_movies CASCADE;
    DROP TRIGGER IF EXISTS metric_values_check_refs_ins ON reelscore.metric_values;
    DROP TRIGGER IF EXISTS metric_values_check_refs_upd ON reelscore.metric_values;
    DROP TRIGGER IF EXISTS movies_cascade_values ON reelscore.movies;
    DROP TRIGGER IF EXISTS movies_cascade_values_truncate ON reelscore.movies;
    DROP TRIGGER IF EXISTS movies_key_values ON reelscore.movies;
    DROP TRIGGER IF EXISTS metric_definitions_restrict_values ON reelscore.metric_definitions;
    DROP TRIGGER IF EXISTS metric_definitions_restrict_values_truncate ON reelscore.metric_definitions;
    DROP TRIGGER IF EXISTS metric_definitions_key_values ON reelscore.metric_definitions;
    ALTER TABLE reelscore.metric_values
      ADD CONSTRAINT metric_values_movie_id_fkey FOREIGN KEY (movie_id) REFERENCES reelscore.movies (id) ON DELETE CASCADE,
      ADD CONSTRAINT metric_values_metric_id_fkey FOREIGN KEY (metric_id) REFERENCES reelscore.metric_definitions (id);
    """)
