"""precomputed scores: unlogged partitions with their own narrow indexes

A full rescore of one profile builds its movie_scores partition anew and swaps it in. At 1M
movies two thirds of its time went to making the new partition durable: every heap row
WAL-logged, both btrees written to WAL page by page and fsynced at the end of their builds.
The scores are derived data (a pure function of movie_features and the profile), so the
partitions are now UNLOGGED, like ts_trend_sums (0017). profile_score_state, which says which
profiles have precomputed scores, is unlogged too: after a crash both come back empty
together, the readers then compute scores fresh (movie_score, top_movies), score_staleness
says every profile needs a full rescore, and the next refresh_scores() rebuilds them.
Unlogged tables cannot be read on a standby: there the readers compute fresh as well.

The indexes move from the partitioned parent to each partition, without the constant
profile_id column: a unique (movie_id) and the ranking (score DESC NULLS LAST, movie_id).
Narrower keys make the two index builds of a rescore cheaper, and a delete by movie_id
alone probes each partition's index instead of scanning it. Uniqueness of
(profile_id, movie_id) still holds: profile_id is the partition key.

Revision ID: 0018
Revises: 0017
"""
from migrations.helpers import each_score_partition, run_sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    DROP INDEX reelscore.movie_scores_top;
    ALTER TABLE reelscore.movie_scores DROP CONSTRAINT movie_scores_pkey;
    ALTER TABLE reelscore.profile_score_state SET UNLOGGED;
    """ + each_score_partition(r"""
        EXECUTE format('ALTER TABLE reelscore.%I SET UNLOGGED', p.relname);
        EXECUTE format('ALTER TABLE reelscore.%I ADD CONSTRAINT %I PRIMARY KEY (movie_id)', p.relname, p.relname || '_pkey');
        EXECUTE format('CREATE INDEX %I ON reelscore.%I (score DESC NULLS LAST, movie_id)', p.relname || '_top', p.relname);
    """))


def downgrade() -> None:
    run_sql(each_score_partition(r"""
        EXECUTE format('ALTER TABLE reelscore.%I DROP CONSTRAINT %I', p.relname, p.relname || '_pkey');
        EXECUTE format('DROP INDEX reelscore.%I', p.relname || '_top');
        EXECUTE format('ALTER TABLE reelscore.%I SET LOGGED', p.relname);
    """) + r"""
    ALTER TABLE reelscore.profile_score_state SET LOGGED;
    ALTER TABLE reelscore.movie_scores ADD CONSTRAINT movie_scores_pkey PRIMARY KEY (profile_id, movie_id);
    CREATE INDEX movie_scores_top ON reelscore.movie_scores (profile_id, score DESC NULLS LAST, movie_id);
    """)
