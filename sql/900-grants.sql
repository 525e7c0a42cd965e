-- 900-grants: least privilege for the three group roles; PUBLIC gets nothing.
-- reelscore_read: the read API; reelscore_write: read + loading values;
-- reelscore_admin: write + editing definitions and profiles (roles inherit in that order).

REVOKE ALL ON ALL TABLES IN SCHEMA reelscore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reelscore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA reelscore FROM PUBLIC;
GRANT USAGE ON SCHEMA reelscore TO reelscore_read;

-- == foundation ==
GRANT EXECUTE ON FUNCTION reelscore.current_actor(), reelscore.current_reason(),
  reelscore.python_info(), reelscore.extension_version(text), reelscore.setting_or_null(text),
  reelscore.capabilities()
  TO reelscore_read;
GRANT SELECT ON reelscore.plpy_modules TO reelscore_read;  -- PL/Python shims read their sources as the caller

-- == registry ==
GRANT SELECT ON reelscore.metric_definitions, reelscore.metric_norm_params, reelscore.metric_distributions,
  reelscore.metric_definition_history TO reelscore_read;
GRANT EXECUTE ON FUNCTION
  reelscore.norm_linear(float8, float8, float8), reelscore.norm_log(float8, float8),
  reelscore.norm_sigmoid(float8, float8, float8), reelscore.norm_steps(float8, float8[]),
  reelscore.norm_boolean(float8, float8), reelscore.norm_piecewise(float8, float8[]),
  reelscore.norm_percentile(float8, float8[]), reelscore.safe_fraction(float8, float8), reelscore.normalize_with(text, float8[], float8),
  reelscore.raw_value_problem(text, float8, float8, float8), reelscore.normalize_value(text, float8)
  TO reelscore_read;
-- Editing definitions: the validation and history triggers run as the editor (SECURITY INVOKER).
GRANT INSERT, UPDATE, DELETE ON reelscore.metric_definitions TO reelscore_admin;
GRANT INSERT ON reelscore.metric_definition_history TO reelscore_admin;
GRANT INSERT, UPDATE ON reelscore.metric_distributions TO reelscore_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA reelscore TO reelscore_admin;
GRANT EXECUTE ON FUNCTION
  reelscore.decode_normalization_params(text, text, jsonb, float8, float8),
  reelscore.metric_definitions_validate(), reelscore.metric_definitions_record(),
  reelscore.refresh_distributions(integer)
  TO reelscore_admin;

-- == admin ==
-- The panel's users: the table is closed (revision 0009); the SECURITY DEFINER functions of
-- sql/750-admin.sql are the way in. Logging in needs only the read role; managing users, admin.
GRANT EXECUTE ON FUNCTION reelscore.admin_check_login(text, text), reelscore.admin_user_role(text)
  TO reelscore_read;
GRANT EXECUTE ON FUNCTION reelscore.admin_create_user(text, text, text), reelscore.admin_set_password(text, text),
  reelscore.admin_set_role(text, text, boolean), reelscore.admin_list_users()
  TO reelscore_admin;

-- == ingestion ==
-- Readers see movies, current values, their history and the load log; writers load values
-- (bulk path, upsert_metric, adapters), which appends history and may create movies.
GRANT SELECT ON reelscore.movies, reelscore.metric_values, reelscore.metric_timeseries,
  reelscore.load_batches, reelscore.load_rejections TO reelscore_read;
GRANT INSERT, UPDATE ON reelscore.movies, reelscore.metric_values, reelscore.load_batches TO reelscore_write;
GRANT INSERT ON reelscore.metric_timeseries, reelscore.load_rejections TO reelscore_write;
GRANT DELETE ON reelscore.metric_values TO reelscore_write;  -- deleting a movie cascades to its values
GRANT USAGE ON SEQUENCE reelscore.movies_id_seq, reelscore.load_batches_id_seq,
  reelscore.load_rejections_id_seq TO reelscore_write;
GRANT EXECUTE ON FUNCTION reelscore.metric_values_history(),
  reelscore.begin_load(text, text), reelscore.finish_load(bigint, text, boolean),
  reelscore.upsert_metric(bigint, text, float8, timestamptz, text),
  reelscore.find_or_create_movie(text, date, integer, text, text[], text),
  reelscore.apply_document_metrics(bigint, jsonb, timestamptz, text),
  reelscore.ingest_tmdb(jsonb, timestamptz), reelscore.ingest_omdb(jsonb, timestamptz)
  TO reelscore_write;
GRANT EXECUTE ON FUNCTION reelscore.parse_display_number(text), reelscore.json_number(jsonb),
  reelscore.tmdb_metrics(jsonb), reelscore.omdb_metrics(jsonb), reelscore.legacy_metrics(jsonb)
  TO reelscore_read;
-- The legacy shape is migrated once, by an admin.
GRANT SELECT, UPDATE ON reelscore.legacy_movies TO reelscore_admin;
GRANT SELECT ON reelscore.legacy_festival_results TO reelscore_admin;
GRANT EXECUTE ON FUNCTION reelscore.migrate_legacy(timestamptz) TO reelscore_admin;

-- == realtime ==
-- Everyone who reads may follow the announcements and catch up; the trigger and flush
-- functions run as their owner (SECURITY DEFINER), so writers need no rights on the outbox.
GRANT SELECT ON reelscore.event_outbox, reelscore.event_outbox_state TO reelscore_read;
GRANT EXECUTE ON FUNCTION reelscore.events_since(bigint, integer), reelscore.outbox_status() TO reelscore_read;
GRANT EXECUTE ON FUNCTION reelscore.emit_event(text, bigint[], text) TO reelscore_write;
GRANT DELETE ON reelscore.event_outbox TO reelscore_admin;
GRANT UPDATE ON reelscore.event_outbox_state TO reelscore_admin;
GRANT EXECUTE ON FUNCTION reelscore.prune_outbox(interval) TO reelscore_admin;

-- == coverage ==
-- Everyone who reads sees the snapshots, views, trends, alerts and gaps; writers (loaders,
-- the CLI refresh, the pg_cron job) take snapshots, which appends rows and thins the history.
GRANT SELECT ON reelscore.coverage_snapshots, reelscore.metric_coverage_stats, reelscore.coverage_group_stats,
  reelscore.coverage_heatmap, reelscore.coverage_latest, reelscore.metric_coverage, reelscore.coverage_by_category,
  reelscore.coverage_by_source, reelscore.coverage_heatmap_latest, reelscore.coverage_trend_7d,
  reelscore.coverage_alerts TO reelscore_read;
GRANT EXECUTE ON FUNCTION reelscore.coverage_trend(integer), reelscore.coverage_history(text, interval),
  reelscore.coverage_gaps(text, text, text, integer, integer), reelscore.coverage_gap_counts()
  TO reelscore_read;
GRANT INSERT, UPDATE, DELETE ON reelscore.coverage_snapshots, reelscore.metric_coverage_stats,
  reelscore.coverage_group_stats, reelscore.coverage_heatmap TO reelscore_write;
GRANT USAGE ON SEQUENCE reelscore.coverage_snapshots_id_seq, reelscore.metric_coverage_stats_id_seq
  TO reelscore_write;
GRANT EXECUTE ON FUNCTION reelscore.refresh_coverage(), reelscore.prune_coverage_history(timestamptz)
  TO reelscore_write;

-- == profiles and scoring ==
GRANT SELECT ON reelscore.weight_profiles, reelscore.profile_metric_weights, reelscore.weight_profile_versions,
  reelscore.weight_profile_activations, reelscore.weight_profile_history, reelscore.user_profile_assignments,
  reelscore.movie_scores, reelscore.movie_features, reelscore.scoring_state, reelscore.profile_score_state,
  reelscore.metric_score_stats, reelscore.score_staleness TO reelscore_read;
GRANT EXECUTE ON FUNCTION
  reelscore.score_categories(), reelscore.profile_sync_active(), reelscore.system_edit_allowed(),
  reelscore.parse_category_weights(jsonb, boolean), reelscore.parse_metric_weights(jsonb),
  reelscore.validate_profile_config(jsonb), reelscore.profile_id(text), reelscore.profile_snapshot(bigint),
  reelscore.version_snapshot(bigint, integer), reelscore.resolve_user_profile(bigint, text),
  reelscore.weights_plan(float8[], jsonb, jsonb), reelscore.profile_plan(bigint),
  reelscore.profile_effective_weights(text), reelscore.definitions_version(), reelscore.vector_schema(),
  reelscore.features_current(),
  reelscore.parse_adhoc_weights(jsonb), reelscore.score_breakdown(bigint, float8[], jsonb, jsonb),
  reelscore.profile_weights_args(bigint), reelscore.check_movie(bigint),
  reelscore.explain_score(bigint, text, boolean), reelscore.explain_score_adhoc(bigint, jsonb, boolean),
  reelscore.score_fresh(bigint, float8[], jsonb, jsonb), reelscore.score_sql(float8[], jsonb, jsonb, text, boolean),
  reelscore.top_n_sql(float8[], jsonb, jsonb, float8), reelscore.category_score_sources(float8[], jsonb, jsonb),
  reelscore.top_n(float8[], jsonb, jsonb, float8, integer, integer), reelscore.search_titles(text, integer),
  reelscore.normalization_direction(text, float8[]), reelscore.sequence_direction(float8[]),
  reelscore.raw_values_reaching_sql(smallint, float8), reelscore.score_upper_bounds(float8[], jsonb, jsonb),
  reelscore.movie_score_detail(bigint, text, bigint), reelscore.movie_score(bigint, text, bigint),
  reelscore.score_movie_adhoc(bigint, jsonb), reelscore.top_movies(text, integer, integer),
  reelscore.top_movies_adhoc(jsonb, integer, integer), reelscore.explain_sentence(bigint, text),
  reelscore.ranking_floor(bigint), reelscore.category_bound_sql(float8[], text[], text[], text)
  TO reelscore_read;
-- Loading values rescores the touched movies in the loader's transaction (triggers run as the loader).
GRANT INSERT, UPDATE, DELETE ON reelscore.movie_features, reelscore.movie_scores TO reelscore_write;
SELECT reelscore.grant_partition_like_parent(i.inhrelid::regclass)
FROM pg_inherits i WHERE i.inhparent = 'reelscore.movie_scores'::regclass;
-- deleting a movie (or its last values) removes its similarity vector in the same transaction
GRANT DELETE ON reelscore.similarity_vectors TO reelscore_write;
GRANT UPDATE ON reelscore.scoring_state TO reelscore_write;
GRANT EXECUTE ON FUNCTION
  reelscore.mark_features_stale(bigint[]), reelscore.lock_features(boolean), reelscore.features_sql(), reelscore.compute_features(bigint[]),
  reelscore.rescore_movies(bigint[]), reelscore.values_changed(), reelscore.movies_deleted(),
  reelscore.score_partition(bigint)
  TO reelscore_write;
-- Editing profiles (history, versions, activations are written by triggers as the editor);
-- full rescores go through the SECURITY DEFINER rescore_profile_id (it swaps partitions).
GRANT INSERT, UPDATE, DELETE ON reelscore.weight_profiles, reelscore.profile_metric_weights,
  reelscore.user_profile_assignments, reelscore.metric_score_stats, reelscore.profile_score_state
  TO reelscore_admin;
GRANT INSERT ON reelscore.weight_profile_versions, reelscore.weight_profile_activations,
  reelscore.weight_profile_history TO reelscore_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA reelscore TO reelscore_admin;
GRANT EXECUTE ON FUNCTION
  reelscore.raise_system_profile(text), reelscore.insert_profile_version(bigint, jsonb),
  reelscore.apply_profile_version(bigint, integer, text), reelscore.profile_version_sync(),
  reelscore.weight_profiles_guard(), reelscore.weight_profiles_record(), reelscore.profile_metric_weights_guard(),
  reelscore.profile_metric_weights_record(), reelscore.profile_log_immutable(),
  reelscore.weight_profile_activations_record(),
  reelscore.save_profile(text, jsonb, jsonb, text, jsonb, bigint, jsonb, boolean),
  reelscore.activate_profile_version(text, integer), reelscore.rollback_profile(text),
  reelscore.definitions_changed(), reelscore.refresh_score_stats(), reelscore.refresh_features(),
  reelscore.rescore_profile_id(bigint), reelscore.refresh_scores(text)
  TO reelscore_admin;

-- == search ==
GRANT SELECT ON reelscore.movie_features, reelscore.movie_scores, reelscore.similarity_vectors TO reelscore_read;
GRANT EXECUTE ON FUNCTION
  reelscore.search_movies(jsonb, text, integer, integer), reelscore.validate_search_filters(jsonb),
  reelscore.search_explain(jsonb, text, integer, integer, boolean, text), reelscore.search_query(jsonb, text),
  reelscore.search_filter_node(jsonb, text, integer, integer), reelscore.search_filter_error(text, text, jsonb),
  reelscore.search_predicate(jsonb, boolean), reelscore.search_matched_expr(jsonb), reelscore.search_conditions(jsonb), reelscore.search_required_conditions(jsonb),
  reelscore.search_profile_id(text), reelscore.search_check_page(integer, integer),
  reelscore.jsonb_text_array(jsonb), reelscore.jsonb_float_array(jsonb),
  reelscore.similar_movies(bigint, integer, boolean), reelscore.similar_movies_exact(bigint, integer, boolean),
  reelscore.parse_query(text)
  TO reelscore_read;
-- Dropping and building the similarity index: the table owner's right (reelscore_admin runs it as owner).
GRANT EXECUTE ON FUNCTION reelscore.drop_similarity_index(), reelscore.build_similarity_index(text),
  reelscore.sync_similarity_vectors(bigint)
  TO reelscore_admin;

-- == ml ==
-- Reading what ml/ learned, clusters, experiments and recommendations; the features read
-- feedback, so the read role sees movies, users' ratings and the learned vectors.
GRANT SELECT ON reelscore.movies, reelscore.metric_feedback, reelscore.ml_models, reelscore.user_clusters,
  reelscore.user_cluster_assignments, reelscore.experiments, reelscore.experiment_assignments,
  reelscore.experiment_outcomes, reelscore.movie_factors, reelscore.user_factors TO reelscore_read;
GRANT SELECT (id) ON reelscore.users TO reelscore_read;  -- recommend() checks the user exists; no demographics
GRANT EXECUTE ON FUNCTION
  reelscore.taste_genres(), reelscore.taste_feature_names(), reelscore.user_taste_features(integer, bigint),
  reelscore.assign_user_cluster(bigint), reelscore.ab_bucket(text, bigint), reelscore.experiment_arm(text, bigint),
  reelscore.ab_sample_size(text, float8, float8, float8, float8, float8),
  reelscore.experiment_summary(text, text), reelscore.analyze_experiment(text, text),
  reelscore.predict_rating(bigint, bigint),
  reelscore.recommend(bigint, integer, text, float8, text, boolean)
  TO reelscore_read;
-- Apps (write) assign users to clusters and experiment arms and record outcomes.
GRANT INSERT, UPDATE ON reelscore.user_cluster_assignments, reelscore.experiment_assignments,
  reelscore.user_profile_assignments TO reelscore_write;
GRANT INSERT ON reelscore.experiment_outcomes TO reelscore_write;
GRANT USAGE ON SEQUENCE reelscore.experiment_outcomes_id_seq TO reelscore_write;
GRANT EXECUTE ON FUNCTION
  reelscore.save_user_cluster(bigint), reelscore.assign_experiment(text, bigint),
  reelscore.experiment_profile(text, bigint), reelscore.record_outcome(text, bigint, text, float8, bigint)
  TO reelscore_write;
-- Admins (ml/ runs as one) publish models and start or stop experiments.
GRANT INSERT, UPDATE, DELETE ON reelscore.ml_models, reelscore.user_clusters, reelscore.experiments,
  reelscore.movie_factors, reelscore.user_factors TO reelscore_admin;
GRANT DELETE ON reelscore.user_cluster_assignments, reelscore.user_profile_assignments,
  reelscore.experiment_assignments, reelscore.experiment_outcomes TO reelscore_admin;
GRANT EXECUTE ON FUNCTION
  reelscore.create_experiment(text, text, text, text, text, float8, float8, float8, float8, float8, jsonb, text)
  TO reelscore_admin;

-- == time series ==
-- Readers see rollups, settings and the analyses; writers refresh the rollups (append and
-- replace rollup rows); admins apply retention (deletes raw points) and schedule jobs.
GRANT SELECT ON reelscore.ts_rollup_hourly, reelscore.ts_rollup_daily, reelscore.ts_settings,
  reelscore.ts_trend_candidates, reelscore.metric_rollup_hourly, reelscore.metric_rollup_daily, reelscore.metric_rollup_weekly TO reelscore_read;
GRANT EXECUTE ON FUNCTION reelscore.ts_bucket(interval, timestamptz), reelscore.normal_two_sided_p(float8),
  reelscore.daily_series(smallint, timestamptz, boolean),
  reelscore.trending(text, interval, integer, boolean, integer, integer),
  reelscore.spikes(text, interval, float8, interval, integer), reelscore.seasonal_by_genre(text, interval)
  TO reelscore_read;
GRANT INSERT, UPDATE, DELETE ON reelscore.ts_rollup_hourly, reelscore.ts_rollup_daily, reelscore.ts_trend_candidates
  TO reelscore_write;
GRANT UPDATE ON reelscore.ts_settings TO reelscore_write;
-- the trend candidates' running sums are written by whoever refreshes the rollups
GRANT SELECT, INSERT, UPDATE, DELETE ON reelscore.ts_trend_sums, reelscore.ts_trend_windows TO reelscore_write;
GRANT EXECUTE ON FUNCTION reelscore.ols_slope_from_sums(integer, integer, bigint, bigint, numeric, numeric)
  TO reelscore_write;
GRANT EXECUTE ON FUNCTION reelscore.append_points(regclass, jsonb), reelscore.refresh_rollups(timestamptz, timestamptz),
  reelscore.merge_rollup(text, smallint[], timestamptz, timestamptz), reelscore.refresh_trend_candidates()
  TO reelscore_write;
GRANT DELETE ON reelscore.metric_timeseries TO reelscore_admin;
GRANT EXECUTE ON FUNCTION reelscore.apply_retention(interval), reelscore.schedule_refreshes(text, text, text, text),
  reelscore.unschedule_refreshes() TO reelscore_admin;
