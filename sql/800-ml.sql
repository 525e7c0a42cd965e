-- 800-ml: what ml/ learns, served in SQL: user taste features, assignment of a user to the
-- nearest taste cluster, and A/B experiments (deterministic assignment, outcomes, analysis).

-- ---------------------------------------------------------------------------------------
-- Taste features of a user (the input of the clusters model; ml/features.py reads them here,
-- so training and assignment cannot disagree on what a feature means).
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reelscore.taste_genres() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT ARRAY['Action', 'Adventure', 'Animation', 'Children''s', 'Comedy', 'Crime', 'Documentary',
                   'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery', 'Romance', 'Sci-Fi',
                   'Thriller', 'War', 'Western']::text[] $$;
COMMENT ON FUNCTION reelscore.taste_genres() IS
  'The genres (MovieLens''s 18) whose affinities are taste features, in feature order.';

CREATE OR REPLACE FUNCTION reelscore.taste_feature_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT ARRAY['follows_rating', 'follows_award', 'follows_financial', 'follows_cultural',
                   'follows_popularity', 'follows_consensus', 'mainstream', 'activity',
                   'mean_rating', 'sd_rating']::text[]
             || ARRAY(SELECT 'genre:' || g FROM unnest(reelscore.taste_genres()) WITH ORDINALITY t(g, i) ORDER BY i) $$;
COMMENT ON FUNCTION reelscore.taste_feature_names() IS
  'Names of the taste features, in the order of user_taste_features(): follows_<category> = Pearson correlation of the user''s ratings with the movies'' category score; follows_consensus = with the movies'' mean rating; mainstream = mean ln(1 + ratings) of the movies rated; activity = ln(ratings); genre:<g> = shrunken mean deviation of the user''s ratings in the genre from the user''s mean.';

CREATE OR REPLACE FUNCTION reelscore.user_taste_features(p_min_ratings integer DEFAULT 20,
                                                         p_user_id bigint DEFAULT NULL)
RETURNS TABLE (user_id bigint, n_ratings integer, features double precision[])
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  WITH r AS (      -- one rating per user and movie (the mean when a user rated a movie twice)
    SELECT f.user_id, f.movie_id, avg(f.user_rating) AS rating
      FROM reelscore.metric_feedback f
     WHERE f.user_rating IS NOT NULL AND (p_user_id IS NULL OR f.user_id = p_user_id)
     GROUP BY f.user_id, f.movie_id
  ), u AS (
    SELECT r.user_id, avg(r.rating) AS mean_r FROM r GROUP BY r.user_id
    HAVING count(*) >= greatest(p_min_ratings, 2)
  ), ms AS (       -- every user's ratings of the movies involved: consensus and popularity
    SELECT f.movie_id, avg(f.user_rating) AS mean_rating, count(*) AS n
      FROM reelscore.metric_feedback f
     WHERE f.user_rating IS NOT NULL AND f.movie_id IN (SELECT r.movie_id FROM r JOIN u USING (user_id))
     GROUP BY f.movie_id
  ), b AS (
    SELECT r.user_id, r.rating, r.rating - u.mean_r AS dev, m.genres, ms.mean_rating, ln(1 + ms.n) AS lpop,
           mf.cat_rating, mf.cat_award, mf.cat_financial, mf.cat_cultural, mf.cat_popularity
      FROM r JOIN u USING (user_id)
      JOIN reelscore.movies m ON m.id = r.movie_id
      JOIN ms ON ms.movie_id = r.movie_id
      LEFT JOIN reelscore.movie_features mf ON mf.movie_id = r.movie_id
  ), a AS (        -- a correlation needs 5 pairs; otherwise (or with no variance) it is 0
    SELECT b.user_id, count(*)::integer AS n,
           CASE WHEN count(b.cat_rating) >= 5 THEN coalesce(corr(b.rating, b.cat_rating), 0) ELSE 0 END AS c1,
           CASE WHEN count(b.cat_award) >= 5 THEN coalesce(corr(b.rating, b.cat_award), 0) ELSE 0 END AS c2,
           CASE WHEN count(b.cat_financial) >= 5 THEN coalesce(corr(b.rating, b.cat_financial), 0) ELSE 0 END AS c3,
           CASE WHEN count(b.cat_cultural) >= 5 THEN coalesce(corr(b.rating, b.cat_cultural), 0) ELSE 0 END AS c4,
           CASE WHEN count(b.cat_popularity) >= 5 THEN coalesce(corr(b.rating, b.cat_popularity), 0) ELSE 0 END AS c5,
           coalesce(corr(b.rating, b.mean_rating), 0) AS c6,
           avg(b.lpop) AS mainstream, ln(count(*)) AS activity,
           avg(b.rating) AS mean_rating, coalesce(stddev_samp(b.rating), 0) AS sd_rating
      FROM b GROUP BY b.user_id
  ), g AS (        -- genre affinity: sum of deviations / (count + 5), a shrunken mean deviation
    SELECT b.user_id, gg.genre, sum(b.dev) / (count(*) + 5) AS aff
      FROM b CROSS JOIN LATERAL unnest(b.genres) AS gg(genre)
     WHERE gg.genre = ANY (reelscore.taste_genres())
     GROUP BY b.user_id, gg.genre
  )
  SELECT a.user_id, a.n,
         ARRAY[a.c1, a.c2, a.c3, a.c4, a.c5, a.c6, a.mainstream, a.activity, a.mean_rating, a.sd_rating]::float8[]
         || ARRAY(SELECT coalesce(g.aff, 0)::float8
                    FROM unnest(reelscore.taste_genres()) WITH ORDINALITY AS t(genre, i)
                    LEFT JOIN g ON g.user_id = a.user_id AND g.genre = t.genre
                   ORDER BY t.i)
    FROM a
   ORDER BY a.user_id
$$;
COMMENT ON FUNCTION reelscore.user_taste_features(integer, bigint) IS
  'Taste features (names: taste_feature_names()) of every user with at least p_min_ratings ratings, or of one user: how their ratings follow each category score and the consensus, how mainstream and active they are, their rating scale and genre affinities.';

-- ---------------------------------------------------------------------------------------
-- Clusters
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reelscore.assign_user_cluster(p_user_id bigint)
RETURNS TABLE (model_id bigint, cluster_no smallint, label text, profile_id bigint, distance double precision)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  WITH m AS (
    SELECT mm.id, (mm.params ->> 'min_ratings')::integer AS min_ratings,
           ARRAY(SELECT jsonb_array_elements_text(mm.params -> 'mean')::float8) AS mu,
           ARRAY(SELECT jsonb_array_elements_text(mm.params -> 'scale')::float8) AS sd
      FROM reelscore.ml_models mm WHERE mm.kind = 'clusters' AND mm.active
  ), z AS (
    SELECT (SELECT array_agg((t.x - t.mu) / t.sd ORDER BY t.i)
              FROM unnest(f.features, m.mu, m.sd) WITH ORDINALITY AS t(x, mu, sd, i))::vector AS zv
      FROM m CROSS JOIN LATERAL reelscore.user_taste_features(m.min_ratings, p_user_id) f
  )
  SELECT c.model_id, c.cluster_no, c.label, c.profile_id, c.centroid <-> z.zv
    FROM m JOIN reelscore.user_clusters c ON c.model_id = m.id CROSS JOIN z
   ORDER BY c.centroid <-> z.zv, c.cluster_no
   LIMIT 1
$$;
COMMENT ON FUNCTION reelscore.assign_user_cluster(bigint) IS
  'Nearest taste cluster of the active clusters model for a user (standardized features, Euclidean distance to the centroid). No row when there is no active model or the user has fewer ratings than the model requires (params.min_ratings).';

CREATE OR REPLACE FUNCTION reelscore.save_user_cluster(p_user_id bigint) RETURNS smallint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_row record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM reelscore.users WHERE id = p_user_id) THEN
    RAISE EXCEPTION 'unknown user %', p_user_id USING ERRCODE = 'no_data_found',
      HINT = 'Pass reelscore.users.id.';
  END IF;
  SELECT * INTO v_row FROM reelscore.assign_user_cluster(p_user_id);
  IF NOT FOUND THEN
    RETURN NULL;   -- no active model, or not enough ratings yet: the default profile applies
  END IF;
  INSERT INTO reelscore.user_cluster_assignments AS a (model_id, user_id, cluster_no, distance, source)
  VALUES (v_row.model_id, p_user_id, v_row.cluster_no, v_row.distance, 'assign')
  ON CONFLICT (model_id, user_id) DO UPDATE
    SET cluster_no = EXCLUDED.cluster_no, distance = EXCLUDED.distance, source = 'assign', assigned_at = now();
  IF v_row.profile_id IS NOT NULL THEN
    INSERT INTO reelscore.user_profile_assignments (user_id, profile_id, source, model_version)
    VALUES (p_user_id, v_row.profile_id, 'cluster',
            (SELECT version FROM reelscore.ml_models WHERE id = v_row.model_id))
    ON CONFLICT (user_id, source) DO UPDATE
      SET profile_id = EXCLUDED.profile_id, model_version = EXCLUDED.model_version, assigned_at = now();
  END IF;
  RETURN v_row.cluster_no;
END
$$;
COMMENT ON FUNCTION reelscore.save_user_cluster(bigint) IS
  'Assigns a user to the nearest cluster of the active model and records it (user_cluster_assignments, and the cluster''s profile in user_profile_assignments with source ''cluster''). Returns the cluster number, or NULL when the user cannot be assigned yet.';

-- ---------------------------------------------------------------------------------------
-- A/B experiments
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reelscore.ab_bucket(p_salt text, p_user_id bigint) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT ((hashtextextended(p_salt || ':' || p_user_id::text, 0) & 9223372036854775807) % 1000000)::float8 / 1000000 $$;
COMMENT ON FUNCTION reelscore.ab_bucket(text, bigint) IS
  'Deterministic uniform bucket in [0, 1) of a user for an experiment salt (64-bit hash of salt:user_id, 10^6 buckets).';

CREATE OR REPLACE FUNCTION reelscore.experiment_arm(p_experiment text, p_user_id bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT coalesce(
    (SELECT a.arm FROM reelscore.experiment_assignments a
       JOIN reelscore.experiments e ON e.id = a.experiment_id
      WHERE e.name = p_experiment AND a.user_id = p_user_id),
    (SELECT CASE WHEN reelscore.ab_bucket(e.salt, p_user_id) < e.traffic_split THEN 'experiment' ELSE 'control' END
       FROM reelscore.experiments e WHERE e.name = p_experiment))
$$;
COMMENT ON FUNCTION reelscore.experiment_arm(text, bigint) IS
  'Arm (control or experiment) of a user: the recorded assignment, else the deterministic hash bucket compared with the traffic split. NULL for an unknown experiment.';

CREATE OR REPLACE FUNCTION reelscore.ab_sample_size(p_kind text, p_baseline double precision,
    p_mde double precision, p_alpha double precision DEFAULT 0.05, p_power double precision DEFAULT 0.8,
    p_split double precision DEFAULT 0.5) RETURNS integer[]
LANGUAGE plpython3u IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS $$
if 'reelpy_import' not in GD:
    exec(plpy.execute("SELECT source FROM reelscore.plpy_modules WHERE name = 'reelpy._loader'")[0]['source'], GD)
ab = GD['reelpy_import'](plpy, GD, 'reelpy.abtest')
try:
    if p_kind == 'mean':
        return list(ab.sample_size_means(p_baseline, abs(p_mde), p_alpha, p_power, p_split))
    if p_kind == 'proportion':
        return list(ab.sample_size_proportions(p_baseline, p_mde, p_alpha, p_power, p_split))
    plpy.error("unknown metric kind %r" % p_kind, hint="Use 'mean' or 'proportion'.", sqlstate='22023')
except ValueError as exc:
    plpy.error(str(exc), sqlstate='22023')
$$;
COMMENT ON FUNCTION reelscore.ab_sample_size(text, double precision, double precision, double precision, double precision, double precision) IS
  'Planned users per arm {control, experiment} from a power calculation: kind ''mean'' (baseline = standard deviation) or ''proportion'' (baseline = control rate), minimum detectable effect, two-sided alpha, power and the experiment''s traffic share.';

CREATE OR REPLACE FUNCTION reelscore.create_experiment(
    p_name text, p_control_profile text, p_experiment_profile text, p_metric text, p_kind text,
    p_mde double precision, p_baseline double precision, p_split double precision DEFAULT 0.5,
    p_alpha double precision DEFAULT 0.05, p_power double precision DEFAULT 0.8,
    p_metrics jsonb DEFAULT '{}', p_description text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_control bigint;
  v_experiment bigint;
  v_size integer[];
  v_id bigint;
BEGIN
  SELECT id INTO v_control FROM reelscore.weight_profiles WHERE name = p_control_profile;
  IF v_control IS NULL THEN
    RAISE EXCEPTION 'unknown control profile %', p_control_profile USING ERRCODE = 'no_data_found',
      HINT = 'SELECT name FROM reelscore.weight_profiles lists the profiles.';
  END IF;
  SELECT id INTO v_experiment FROM reelscore.weight_profiles WHERE name = p_experiment_profile;
  IF v_experiment IS NULL THEN
    RAISE EXCEPTION 'unknown experiment profile %', p_experiment_profile USING ERRCODE = 'no_data_found',
      HINT = 'SELECT name FROM reelscore.weight_profiles lists the profiles.';
  END IF;
  IF p_kind IS NULL OR p_kind NOT IN ('mean', 'proportion') THEN
    RAISE EXCEPTION 'metric kind must be mean or proportion, got %', p_kind USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_metrics IS NULL OR jsonb_typeof(p_metrics) <> 'object'
     OR EXISTS (SELECT 1 FROM jsonb_each_text(p_metrics) e WHERE e.value NOT IN ('mean', 'proportion')) THEN
    RAISE EXCEPTION 'secondary metrics must be an object {"name": "mean"|"proportion"}, got %', p_metrics
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_size := reelscore.ab_sample_size(p_kind, p_baseline, p_mde, p_alpha, p_power, p_split);
  INSERT INTO reelscore.experiments (name, description, control_profile_id, experiment_profile_id,
      primary_metric, metric_kind, metrics, traffic_split, alpha, power, mde, baseline,
      planned_control, planned_experiment, salt)
  VALUES (p_name, p_description, v_control, v_experiment, p_metric, p_kind,
      p_metrics || jsonb_build_object(p_metric, p_kind), p_split, p_alpha, p_power, p_mde, p_baseline,
      v_size[1], v_size[2], p_name)
  RETURNING id INTO v_id;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION reelscore.create_experiment(text, text, text, text, text, double precision, double precision, double precision, double precision, double precision, jsonb, text) IS
  'Starts an A/B experiment of two profiles on a primary metric (kind mean or proportion) with secondary metrics {"name": kind}; the planned sample size per arm comes from ab_sample_size(kind, baseline, mde, alpha, power, split). The assignment salt is the experiment name.';

CREATE OR REPLACE FUNCTION reelscore.assign_experiment(p_experiment text, p_user_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_exp reelscore.experiments%ROWTYPE;
  v_arm text;
BEGIN
  SELECT * INTO v_exp FROM reelscore.experiments WHERE name = p_experiment;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown experiment %', p_experiment USING ERRCODE = 'no_data_found';
  END IF;
  SELECT arm INTO v_arm FROM reelscore.experiment_assignments WHERE experiment_id = v_exp.id AND user_id = p_user_id;
  IF FOUND THEN
    RETURN v_arm;
  END IF;
  IF v_exp.status <> 'running' THEN
    RAISE EXCEPTION 'experiment % is %, it takes no new users', p_experiment, v_exp.status
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  v_arm := CASE WHEN reelscore.ab_bucket(v_exp.salt, p_user_id) < v_exp.traffic_split THEN 'experiment' ELSE 'control' END;
  INSERT INTO reelscore.experiment_assignments (experiment_id, user_id, arm)
  VALUES (v_exp.id, p_user_id, v_arm)
  ON CONFLICT (experiment_id, user_id) DO NOTHING;
  RETURN (SELECT arm FROM reelscore.experiment_assignments WHERE experiment_id = v_exp.id AND user_id = p_user_id);
END
$$;
COMMENT ON FUNCTION reelscore.assign_experiment(text, bigint) IS
  'Assigns a user to an arm of a running experiment (deterministic hash bucket, then sticky) and returns the arm.';

CREATE OR REPLACE FUNCTION reelscore.experiment_profile(p_experiment text, p_user_id bigint) RETURNS text
LANGUAGE sql VOLATILE SECURITY INVOKER
AS $$
  SELECT p.name FROM reelscore.experiments e
    JOIN reelscore.weight_profiles p
      ON p.id = CASE reelscore.assign_experiment(p_experiment, p_user_id)
                  WHEN 'experiment' THEN e.experiment_profile_id ELSE e.control_profile_id END
   WHERE e.name = p_experiment
$$;
COMMENT ON FUNCTION reelscore.experiment_profile(text, bigint) IS
  'Name of the profile to score with for this user in this experiment (assigning the user when new).';

CREATE OR REPLACE FUNCTION reelscore.record_outcome(p_experiment text, p_user_id bigint, p_metric text,
    p_value double precision, p_movie_id bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_exp reelscore.experiments%ROWTYPE;
  v_id bigint;
BEGIN
  SELECT * INTO v_exp FROM reelscore.experiments WHERE name = p_experiment;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown experiment %', p_experiment USING ERRCODE = 'no_data_found';
  END IF;
  IF NOT v_exp.metrics ? p_metric THEN
    RAISE EXCEPTION 'experiment % does not measure %', p_experiment, p_metric
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('Its metrics are %s.', v_exp.metrics);
  END IF;
  IF p_value IS NULL OR p_value <> p_value OR p_value IN ('Infinity', '-Infinity') THEN
    RAISE EXCEPTION 'outcome value must be a finite number, got %', p_value USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF v_exp.metrics ->> p_metric = 'proportion' AND p_value NOT IN (0, 1) THEN
    RAISE EXCEPTION 'metric % is a proportion: the value must be 0 or 1, got %', p_metric, p_value
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM reelscore.assign_experiment(p_experiment, p_user_id);
  INSERT INTO reelscore.experiment_outcomes (experiment_id, user_id, metric, value, movie_id)
  VALUES (v_exp.id, p_user_id, p_metric, p_value, p_movie_id)
  RETURNING id INTO v_id;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION reelscore.record_outcome(text, bigint, text, double precision, bigint) IS
  'Records one observed outcome of a user in an experiment (assigning the user when new). A proportion metric takes 0 or 1.';

CREATE OR REPLACE FUNCTION reelscore.experiment_summary(p_experiment text, p_metric text)
RETURNS TABLE (arm text, n bigint, mean double precision, var double precision, successes bigint)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  WITH per_user AS (   -- the unit of analysis is the randomized unit: one value per user
    SELECT o.user_id, a.arm, avg(o.value) AS v, max(o.value) AS hit
      FROM reelscore.experiments e
      JOIN reelscore.experiment_outcomes o ON o.experiment_id = e.id AND o.metric = p_metric
      JOIN reelscore.experiment_assignments a ON a.experiment_id = e.id AND a.user_id = o.user_id
     WHERE e.name = p_experiment
     GROUP BY o.user_id, a.arm
  )
  SELECT arms.arm, count(p.user_id), avg(p.v), var_samp(p.v), count(*) FILTER (WHERE p.hit >= 1)
    FROM (VALUES ('control'), ('experiment')) AS arms(arm)
    LEFT JOIN per_user p ON p.arm = arms.arm
   GROUP BY arms.arm
   ORDER BY arms.arm
$$;
COMMENT ON FUNCTION reelscore.experiment_summary(text, text) IS
  'Per arm: users with an outcome for the metric, mean and sample variance of the per-user mean outcome, and users with a success (any outcome 1, for proportions).';

CREATE OR REPLACE FUNCTION reelscore.analyze_experiment(p_experiment text, p_metric text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpython3u STABLE SECURITY INVOKER
AS $$
if 'reelpy_import' not in GD:
    exec(plpy.execute("SELECT source FROM reelscore.plpy_modules WHERE name = 'reelpy._loader'")[0]['source'], GD)
ab = GD['reelpy_import'](plpy, GD, 'reelpy.abtest')
import json
exp = plpy.execute(plpy.prepare(
    "SELECT primary_metric, metrics::text AS metrics, alpha, planned_control, planned_experiment, status"
    " FROM reelscore.experiments WHERE name = $1", ["text"]), [p_experiment])
if not exp:
    plpy.error("unknown experiment %s" % p_experiment, sqlstate='P0002')
e = exp[0]
metrics = json.loads(e["metrics"])
metric = p_metric or e["primary_metric"]
if metric not in metrics:
    plpy.error("experiment %s does not measure %s" % (p_experiment, metric),
               detail="Its metrics are %s." % ", ".join(sorted(metrics)), sqlstate='22023')
rows = plpy.execute(plpy.prepare("SELECT * FROM reelscore.experiment_summary($1, $2)", ["text", "text"]),
                    [p_experiment, metric])
arms = {r["arm"]: r for r in rows}
kind = metrics[metric]
def arm(r):
    if kind == "mean":
        return {"n": int(r["n"]), "mean": float(r["mean"] or 0.0), "var": float(r["var"] or 0.0)}
    return {"n": int(r["n"]), "successes": int(r["successes"])}
out = ab.analyze(kind, arm(arms["control"]), arm(arms["experiment"]),
                 (e["planned_control"], e["planned_experiment"]), float(e["alpha"]))
out.update({"experiment": p_experiment, "metric": metric, "kind": kind, "status": e["status"],
            "control": arm(arms["control"]), "experiment_arm": arm(arms["experiment"])})
return json.dumps(out)
$$;
COMMENT ON FUNCTION reelscore.analyze_experiment(text, text) IS
  'Analysis of one metric of an experiment (default: the primary one) on per-user values: Welch''s t-test for means, the two-proportion z-test for rates, the difference with its confidence interval, and the decision; no winner is named before both arms reach the planned sample size.';
