//! An A/B test from event to decision against the stack (Tansu, S3): 2,000 simulated users
//! get outfits from `serve` (impressions on `flashfit.kpi` with their variants), ask
//! `GET /v1/users/{id}/variants`, click with a probability their `ranking` variant plants,
//! send clicks as feedback (the feedback worker logs them as KPI events) and sessions as KPI
//! events without variants (the kpi worker fills them in); then `flashfit ab report` (the
//! binary) reads the result and writes `ab_results`, which DuckDB reads.
//!
//! User ids, salts and the click draws are fixed, so the readout is the same on every run: the
//! A/A experiment's verdict cannot flake.

use std::collections::BTreeMap;

use flashfit_lance::rows::{Garment, VectorDims};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::personal::garment;
use crate::support::*;

const USERS: usize = 2000;

/// The experiments as serve and the workers run them: `skewed` really assigns 60/40.
const RUNNING: &str = r#"
[experiments.ranking]
salt = "ranking-e2e"
start = "2026-01-01T00:00:00Z"
variants = [{ name = "control", weight = 1.0 }, { name = "treatment", weight = 1.0 }]
guardrails = ["mean_session_duration_s >= -10%"]
[experiments.aa]
salt = "aa-e2e"
start = "2026-01-01T00:00:00Z"
variants = [{ name = "a", weight = 1.0 }, { name = "b", weight = 1.0 }]
[experiments.skewed]
salt = "skewed-e2e"
start = "2026-01-01T00:00:00Z"
variants = [{ name = "control", weight = 0.6 }, { name = "treatment", weight = 0.4 }]
"#;

fn click_rate(variant: &str) -> f64 {
    if variant == "treatment" { 0.16 } else { 0.10 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_effect_reads_as_a_win_aa_is_inconclusive_and_a_skewed_split_trips_srm()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flashfit-ab-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let res = experiment(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    res
}

async fn experiment(dir: &std::path::Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let phase =
        |what: &str| eprintln!("ab e2e: {what} at {:.1} s", started.elapsed().as_secs_f64());
    let mut stack = Stack::new()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    // The wardrobes on local disk: 4,000 outfit requests against the S3 test server would
    // measure the server (the S3 paths of LanceDB are tested in the sink and fault suites).
    stack.config.lancedb_uri = format!("file://{}", dir.join("lance").display());
    stack.config.warehouse_uri = format!("s3://flashfit/wh-{id}");
    // A fresh preference store: personalisation starts from nothing, as the draws assume.
    stack.config.database_url =
        flashfit_config::Secret::new(format!("sqlite://{}", dir.join("prefs.db").display()));
    stack.config.kpi.roll_ms = 500;
    let running = dir.join("running.toml");
    std::fs::write(&running, RUNNING)?;
    stack.config.experiments = flashfit_config::Config::load(Some(&running))?.experiments;
    // The intended split the report checks against: 50/50 for `skewed`.
    let intended = dir.join("intended.toml");
    std::fs::write(
        &intended,
        RUNNING.replace(
            r#"{ name = "control", weight = 0.6 }, { name = "treatment", weight = 0.4 }"#,
            r#"{ name = "control", weight = 0.5 }, { name = "treatment", weight = 0.5 }"#,
        ),
    )?;
    let topics = [stack.topics.feedback(), stack.topics.kpi()];
    flashfit_runtime::kafka::ensure_topics(&stack.config.kafka, &topics).await?;

    // Wardrobes, written straight to LanceDB (the chain that makes them is tested elsewhere).
    let users: Vec<String> = (0..USERS).map(|i| format!("ab-user-{i}")).collect();
    let dims = VectorDims {
        image: 1280,
        text: 384,
    };
    let mut garments = Vec::new();
    for u in &users {
        for (g, category, color, formality, tag) in [
            ("tee", "t_shirt", "white", 0.2, "classic"),
            ("hoodie", "hoodie", "red", 0.15, "streetwear"),
            ("jeans", "jeans", "blue", 0.3, "classic"),
            ("sneakers", "sneakers", "white", 0.2, "classic"),
        ] {
            let (_, v) = garment(u, &format!("{u}-{g}"), category, color, formality, tag);
            let r =
                flashfit_schema::GarmentRecord::from_json(&v).map_err(|e| anyhow::anyhow!(e.0))?;
            garments.push(Garment::from_record(&r, dims)?);
        }
    }
    let sink = flashfit_lance::stage::LanceSink::new(
        &stack.config.lancedb_uri,
        &stack.config.s3,
        &stack.config.lance,
        stack
            .topics
            .output_of(flashfit_schema::StageName::Embed)
            .unwrap_or_default(),
        stack.topics.deletes(),
        dims,
    );
    for chunk in garments.chunks(2000) {
        sink.upsert(chunk).await?;
    }

    phase("wardrobes written");
    // Every user: their variants, their outfits (impressions), their clicks and a session.
    let token = CancellationToken::new();
    // Hundreds of users from one address without tokens: one rate-limit bucket, so no limit.
    let mut config = stack.config.clone();
    config.http.rate_per_s = 0;
    let (addr, server) =
        flashfit_serve::serve(&config, "127.0.0.1:0".parse()?, token.clone()).await?;
    let addr = addr.to_string();
    let visits: Vec<anyhow::Result<(String, Value, Value)>> =
        futures::stream::iter(users.iter().cloned())
            .map(|u| {
                let addr = addr.clone();
                async move {
                    let (code, body) = http_get(&addr, &format!("/v1/users/{u}/variants")).await?;
                    anyhow::ensure!(code == 200, "{code} {body}");
                    let variants: Value = serde_json::from_str(&body)?;
                    let (code, body) =
                        http_get(&addr, &format!("/v1/users/{u}/outfits?k=3")).await?;
                    anyhow::ensure!(code == 200, "{code} {body}");
                    Ok((u, variants, serde_json::from_str(&body)?))
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    token.cancel();
    server.await?;
    let mut impressions = 0usize;
    let mut feedback = Vec::new();
    let mut app_events = Vec::new();
    let mut split: BTreeMap<String, usize> = BTreeMap::new();
    let now = chrono::Utc::now();
    for v in visits {
        let (u, variants, outfits) = v?;
        let i: u64 = u.trim_start_matches("ab-user-").parse()?;
        // Fixed draws: with these the A/A experiment's CTR difference is 0.4 standard errors
        // (an unlucky fixture would sit in the 5% tail every run; the A/A false-positive rate
        // itself is checked over 400 simulated experiments in flashfit-stats).
        let mut rng = flashfit_stats::Rng::new(0x1000 + i);
        let ranking = variants["variants"]["ranking"].as_str().unwrap_or_default();
        assert!(variants["experiments_hash"].is_string(), "{variants}");
        *split.entry(format!("ranking/{ranking}")).or_default() += 1;
        let shown = outfits["outfits"].as_array().cloned().unwrap_or_default();
        assert!(!shown.is_empty(), "{outfits}");
        impressions += shown.len();
        for (rank, o) in shown.iter().enumerate() {
            if rng.bernoulli(click_rate(ranking)) {
                feedback.push((
                    u.as_bytes().to_vec(),
                    serde_json::to_vec(&json!({
                        "event_id": format!("{u}-click-{rank}"), "user_id": u, "signal": "click",
                        "garment_ids": o["garment_ids"], "ts": now.to_rfc3339(),
                    }))?,
                ));
            }
        }
        // A session of about five minutes whatever the variant, sent without variants; half
        // the users come back the next day.
        let mut session = |kind: &str, ts: chrono::DateTime<chrono::Utc>, extra: Value| {
            let mut e = json!({"event_id": format!("{u}-{kind}"), "user_id": u, "type": kind,
                "ts": ts.to_rfc3339()});
            if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            app_events.push((
                u.as_bytes().to_vec(),
                serde_json::to_vec(&e).unwrap_or_default(),
            ));
        };
        session(
            "session_end",
            now,
            json!({"duration_s": (300.0 + 60.0 * rng.normal()).max(1.0)}),
        );
        if rng.bernoulli(0.5) {
            session("session_start", now + chrono::Duration::days(1), json!({}));
        }
    }
    eprintln!(
        "ab e2e: {USERS} users {split:?}, {impressions} impressions, {} clicks, {} app events",
        feedback.len(),
        app_events.len()
    );
    phase("visits done");
    let p = stack.producer()?;
    stack.publish_to(&p, &topics[0], &feedback).await?;
    stack.publish_to(&p, &topics[1], &app_events).await?;
    run_worker_until(&stack.config, "feedback", feedback.len() as u64).await?;
    let kpi_total = (impressions + feedback.len() + app_events.len()) as u64;
    phase("feedback applied");
    run_worker_until(&stack.config, "kpi", kpi_total).await?;
    phase("kpi events written");

    let report = |experiment: &str, config: &std::path::Path, format: &str| {
        let mut cmd = tokio::process::Command::new(flashfit_bin());
        cmd.args([
            "ab",
            "report",
            "--experiment",
            experiment,
            "--format",
            format,
        ])
        .current_dir(dir)
        .envs(stack.child_env())
        .env("FLASHFIT_WAREHOUSE_URI", &stack.config.warehouse_uri)
        .env("FLASHFIT_CONFIG", config);
        cmd
    };
    let ranking = json_output(&mut report("ranking", &intended, "json")).await?;
    let verdict = |r: &Value, variant: &str, metric: &str| -> String {
        r["comparisons"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["variant"] == variant && c["metric"] == metric)
            .map(|c| c["verdict"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let users_of = |r: &Value| -> u64 {
        r["variants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["users"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(
        verdict(&ranking, "treatment", "ctr"),
        "significant_win",
        "{ranking:#}"
    );
    assert_eq!(ranking["srm"]["mismatch"], false, "{ranking:#}");
    assert_eq!(users_of(&ranking), USERS as u64, "{ranking:#}");
    // Sessions came without variants: the kpi worker attributed every one.
    let sessions = ranking["variants"][0]["metrics"]["mean_session_duration_s"][0]
        .as_u64()
        .unwrap_or(0)
        + ranking["variants"][1]["metrics"]["mean_session_duration_s"][0]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(sessions, USERS as u64, "{ranking:#}");
    let aa = json_output(&mut report("aa", &intended, "json")).await?;
    assert_eq!(verdict(&aa, "b", "ctr"), "inconclusive", "{aa:#}");
    assert_eq!(aa["srm"]["mismatch"], false, "{aa:#}");
    // The skewed assignment: exit 3 and the loud flag.
    let out = report("skewed", &intended, "text").output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("SAMPLE RATIO MISMATCH"), "{text}");
    // The page, for the product owner.
    let out = report("ranking", &intended, "html").output().await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.join("ab-ranking.html"))?;
    assert_eq!(
        page.matches("<svg").count(),
        5,
        "one interval plot per metric"
    );
    eprintln!(
        "{}",
        String::from_utf8_lossy(&report("ranking", &intended, "text").output().await?.stdout)
    );

    phase("reports read");
    // The whole feedback topic again (a replay): the KPI events it logs again change nothing.
    let mut again = stack.config.clone();
    again.kafka.group_prefix = format!("{}-replay", again.kafka.group_prefix);
    run_worker_until(&again, "feedback", feedback.len() as u64).await?;
    run_worker_until(&stack.config, "kpi", feedback.len() as u64).await?;
    let replayed = json_output(&mut report("ranking", &intended, "json")).await?;
    // (Summation order may differ between runs: values compared to 1e-9.)
    for v in 0..2 {
        let (a, b) = (
            &replayed["variants"][v]["metrics"]["ctr"],
            &ranking["variants"][v]["metrics"]["ctr"],
        );
        assert_eq!(a[0], b[0], "{replayed:#}");
        let (x, y) = (
            a[1]["value"].as_f64().unwrap_or(f64::NAN),
            b[1]["value"].as_f64().unwrap_or(f64::NAN),
        );
        assert!((x - y).abs() <= 1e-9 * y.abs(), "{x} vs {y}: {replayed:#}");
    }

    phase("replay checked");
    // Analysts: DuckDB over ab_results, and schemas/kpi_users.sql in DuckDB against the
    // kpi_users table `flashfit kpi-daily` wrote.
    let out = tokio::process::Command::new(flashfit_bin())
        .arg("kpi-daily")
        .envs(stack.child_env())
        .env("FLASHFIT_WAREHOUSE_URI", &stack.config.warehouse_uri)
        .env("FLASHFIT_CONFIG", &intended)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = python_check(&stack, "check_ab.py", &stack.config.warehouse_uri).await?;
    assert_eq!(v["ctr_verdict"], "significant win", "{v}");
    assert_eq!(v["aa_ctr_verdict"], "inconclusive", "{v}");
    assert_eq!(v["skewed_srm_mismatch"], true, "{v}");
    assert_eq!(v["sql_rows"], v["table_rows"], "{v}");
    assert_eq!(v["users"], json!(3 * USERS), "{v}");
    let imp = &v["impressions"];
    assert_eq!(imp["count"], json!(impressions), "{v}");
    assert_eq!(imp["min_rank"], 1, "{v}");
    assert!(imp["max_rank"].as_u64().is_some_and(|r| r >= 2), "{v}");
    assert_eq!(imp["scorers"], "rules", "{v}");
    for k in ["without_score", "without_models", "without_hash"] {
        assert_eq!(imp[k], 0, "{k}: {v}");
    }
    assert_eq!(v["attributed_sessions"], json!(USERS), "{v}");
    Ok(())
}

/// `flashfit experiments check`: ramping exposure goes out (exit 0); re-weighting a running
/// experiment is refused (exit 1) naming the change; an experiment not started yet may change.
#[tokio::test]
async fn experiments_check_allows_a_ramp_and_refuses_a_reweighting() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flashfit-check-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let running = dir.join("running.toml");
    let base = r#"
[experiments.ranking]
salt = "r1"
start = "2026-01-01T00:00:00Z"
exposure = 0.1
variants = [{ name = "control", weight = 1.0 }, { name = "treatment", weight = 1.0 }]
[experiments.next]
salt = "n1"
start = "2999-01-01T00:00:00Z"
variants = [{ name = "a", weight = 1.0 }, { name = "b", weight = 1.0 }]
"#;
    std::fs::write(&running, base)?;
    let check = |new: String| {
        let running = running.clone();
        let dir = dir.clone();
        async move {
            let file = dir.join(format!("{}.toml", uuid::Uuid::new_v4()));
            std::fs::write(&file, new)?;
            let out = tokio::process::Command::new(flashfit_bin())
                .args(["experiments", "check", "--running"])
                .arg(&running)
                .env("FLASHFIT_CONFIG", &file)
                .output()
                .await?;
            anyhow::Ok((
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ))
        }
    };
    let ramp = check(base.replace("exposure = 0.1", "exposure = 0.5")).await?;
    assert_eq!(ramp.0, Some(0), "{}", ramp.1);
    let reweighted = check(base.replace(
        r#"{ name = "treatment", weight = 1.0 }]
[experiments.next]"#,
        r#"{ name = "treatment", weight = 3.0 }]
[experiments.next]"#,
    ))
    .await?;
    assert_eq!(reweighted.0, Some(1), "{}", reweighted.1);
    assert!(
        reweighted
            .1
            .contains("ranking: variants or weights changed"),
        "{}",
        reweighted.1
    );
    let future = check(base.replace(
        r#"{ name = "b", weight = 1.0 }"#,
        r#"{ name = "b", weight = 2.0 }"#,
    ))
    .await?;
    assert_eq!(future.0, Some(0), "{}", future.1);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
