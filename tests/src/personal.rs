//! Feedback, personalisation, A/B and KPIs end to end against the stack (Tansu, S3,
//! PostgreSQL): garments ingested through the lance worker → feedback events through the
//! feedback worker → weights in PostgreSQL as the seed's formula says → the next
//! recommendation's ranking reflects them; duplicates and replays change nothing; every
//! response logs impressions that the kpi worker and the daily rollup count per variant.

use flashfit_serve as serve;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// An enriched garment record as the embed stage writes it.
pub(crate) fn garment(
    user: &str,
    id: &str,
    category: &str,
    color: &str,
    formality: f64,
    tag: &str,
) -> (Vec<u8>, Vec<u8>) {
    let mut image = vec![0.0f32; 1280];
    image[id.len() % 1280] = 1.0;
    let mut v = flashfit_schema::record::testing::embedded(
        &format!("e-{id}"),
        id,
        user,
        "2026-11-22T10:00:00.000Z",
        (1280, 384),
    );
    v["classification"]["category"] = json!(category);
    v["attributes"]["color_primary"] = json!(color);
    v["attributes"]["colors"] = json!([{"name": color, "rgb": [0, 0, 0], "share": 1.0}]);
    v["attributes"]["formality"] = json!(formality);
    v["attributes"]["style_tags"] = json!([tag]);
    v["embedding"] = json!({"caption": format!("{color} {category}"), "image_vector": image,
        "text_vector": vec![0.1f32; 384]});
    (
        id.as_bytes().to_vec(),
        serde_json::to_vec(&v).expect("json"),
    )
}

pub(crate) fn feedback(
    user: &str,
    id: &str,
    signal: &str,
    garments: &[&str],
) -> (Vec<u8>, Vec<u8>) {
    let v = json!({"event_id": id, "user_id": user, "signal": signal, "garment_ids": garments,
        "ts": "2026-11-22T11:00:00Z"});
    (
        user.as_bytes().to_vec(),
        serde_json::to_vec(&v).expect("json"),
    )
}

async fn outfits(addr: &str, user: &str, query: &str) -> anyhow::Result<Value> {
    let (code, body) = http_get(addr, &format!("/v1/users/{user}/outfits{query}")).await?;
    anyhow::ensure!(code == 200, "{code} {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Rank of the first outfit holding `garment` (None: not returned).
fn rank_of(v: &Value, garment: &str) -> Option<usize> {
    v["outfits"].as_array()?.iter().position(|o| {
        o["garment_ids"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x == garment))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_reranks_outfits_once_per_event_and_impressions_are_counted() -> anyhow::Result<()>
{
    let mut stack = Stack::new()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    stack.config.lancedb_uri = format!("s3://flashfit/lance-{id}");
    stack.config.warehouse_uri = format!("s3://flashfit/wh-{id}");
    // Small files, rolled quickly (the default roll is a minute).
    stack.config.kpi.max_rows = 5;
    stack.config.kpi.roll_ms = 300;
    let user = format!("u-{}", &id[..8]);
    let topics = [
        stack
            .topics
            .output_of(flashfit_schema::StageName::Embed)
            .expect("embedded"),
        stack.topics.deletes(),
        stack.topics.feedback(),
        stack.topics.kpi(),
    ];
    flashfit_runtime::kafka::ensure_topics(&stack.config.kafka, &topics).await?;
    let p = stack.producer()?;
    let wardrobe = [
        garment(&user, "tee", "t_shirt", "white", 0.2, "classic"),
        garment(&user, "hoodie", "hoodie", "red", 0.15, "streetwear"),
        garment(&user, "jeans", "jeans", "blue", 0.3, "classic"),
        garment(&user, "chinos", "chinos", "tan", 0.5, "classic"),
        garment(&user, "sneakers", "sneakers", "white", 0.2, "classic"),
        garment(&user, "boots", "boots", "brown", 0.45, "classic"),
    ];
    stack.publish_to(&p, &topics[0], &wardrobe).await?;
    run_worker_until(&stack.config, "lance", wardrobe.len() as u64).await?;

    let token = CancellationToken::new();
    let (addr, server) = serve::serve(&stack.config, "127.0.0.1:0".parse()?, token.clone()).await?;
    let addr = addr.to_string();
    let before = outfits(&addr, &user, "?k=50").await?;
    assert_eq!(before["variant"], "control", "{before}");
    let hoodie_before = rank_of(&before, "hoodie").expect("a hoodie outfit");
    assert!(
        hoodie_before > 0,
        "the hoodie outfit does not start on top: {before}"
    );
    // Unknown user: empty, 200. Bad parameters: 400 with a message.
    let none = outfits(&addr, "nobody-at-all", "").await?;
    assert_eq!(none["outfits"], json!([]));
    for q in [
        "?k=0",
        "?k=x",
        "?occasion=gala",
        "?season=monsoon",
        "?colour=red",
    ] {
        let (code, body) = http_get(&addr, &format!("/v1/users/{user}/outfits{q}")).await?;
        assert!(code == 400 && body.contains("error"), "{q}: {code} {body}");
    }

    // Ten "wear"s of the hoodie (and one redelivered): +2.0 × 0.1 each on hoodie, red,
    // streetwear.
    let mut events: Vec<_> = (0..10)
        .map(|i| feedback(&user, &format!("{user}-f{i}"), "wear", &["hoodie"]))
        .collect();
    events.push(events[3].clone());
    stack.publish_to(&p, &topics[2], &events).await?;
    run_worker_until(&stack.config, "feedback", events.len() as u64).await?;
    let store = flashfit_prefs::Store::connect(stack.config.database_url.expose()).await?;
    let prefs = store.preferences(&user).await?;
    assert_eq!(prefs.feedback_count, 10, "{prefs:?}");
    for w in [
        &prefs.category["hoodie"],
        &prefs.color["red"],
        &prefs.style["streetwear"],
    ] {
        assert!((w - 2.0).abs() < 1e-9, "{prefs:?}");
    }
    assert!(!prefs.category.contains_key("jeans"));

    let after = outfits(&addr, &user, "?k=50").await?;
    let hoodie_after = rank_of(&after, "hoodie").expect("a hoodie outfit");
    assert!(
        hoodie_after < hoodie_before,
        "{hoodie_before} → {hoodie_after}: {after}"
    );
    assert_eq!(
        after["outfits"][hoodie_after]["breakdown"]["personalization"],
        0.3
    );

    // The whole feedback topic again, as a new consumer group: nothing changes.
    let mut again = stack.config.clone();
    again.kafka.group_prefix = format!("{}-replay", again.kafka.group_prefix);
    run_worker_until(&again, "feedback", events.len() as u64).await?;
    assert_eq!(store.preferences(&user).await?, prefs);
    token.cancel();
    server.await?;

    // Impressions: one per returned outfit of the successful responses for this user; and
    // the feedback worker's KPI events: one per feedback event, the redelivery and the whole
    // replay logging the same ids again (22 messages, 10 ids).
    let shown = [&before, &after]
        .iter()
        .map(|v| v["outfits"].as_array().map_or(0, Vec::len))
        .sum::<usize>() as u64;
    let logged = 2 * events.len() as u64;
    let tail = stack.tail(&topics[3])?;
    let got = tail
        .collect_until(std::time::Duration::from_secs(30), |m| {
            m.len() as u64 >= shown + logged
        })
        .await;
    let kinds = |t: &str| {
        got.iter()
            .filter_map(|m| rdkafka::Message::payload(m))
            .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
            .filter(|v| v["type"] == t)
            .count() as u64
    };
    assert_eq!(kinds("impression"), shown, "impressions on flashfit.kpi");
    assert_eq!(kinds("wear"), logged, "feedback logged on flashfit.kpi");
    run_worker_until(&stack.config, "kpi", shown + logged).await?;
    let r = flashfit_pipeline::kpi_daily(&stack.config).await?;
    assert_eq!(
        (r.events as u64, r.duplicates as u64),
        (shown + 10, logged - 10),
        "{r:?}"
    );
    assert_eq!(
        r.rows, 2,
        "one experiment and variant; impressions today, wears on the 22nd"
    );
    assert_eq!(r.users.as_ref().map(|u| u.0), Some(1), "one user: {r:?}");
    let v = python_check(&stack, "check_kpi.py", &stack.config.warehouse_uri).await?;
    assert_eq!(v["rows"][0][0], "outfit_scorer", "{v}");
    assert_eq!(v["rows"][0][1], "control", "{v}");
    assert_eq!(v["rows"][0][2], shown, "{v}");
    // The README's SQL (schemas/kpi_daily.sql) in DuckDB gives the table's rows.
    assert_eq!(v["sql_rows"], v["table_rows"], "{v}");
    assert_eq!(v["table_rows"].as_array().map(Vec::len), Some(2), "{v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preference_store_suite_on_postgres() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let url = stack.config.database_url.expose();
    anyhow::ensure!(url.starts_with("postgres"), "needs PostgreSQL, got {url}");
    let store = flashfit_prefs::Store::connect(url).await?;
    flashfit_prefs::suite::conformance(&store, &stack.prefix).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_gets_the_same_variant_in_two_processes() -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let cfg = dir.join("flashfit.toml");
    std::fs::write(
        &cfg,
        r#"
[experiments.outfit_scorer]
salt = "e2e"
variants = [{ name = "control", weight = 0.5 }, { name = "colour_first", weight = 0.5, weights = { color_harmony = 0.6, formality_match = 0.2, category_combo = 0.2 } }]
[experiments.onboarding]
salt = "e2e"
variants = [{ name = "a", weight = 1.0 }, { name = "b", weight = 3.0 }]
"#,
    )?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(
            json_output(
                tokio::process::Command::new(flashfit_bin())
                    .args(["variants", "--user", "user-42"])
                    .env("FLASHFIT_CONFIG", &cfg),
            )
            .await?,
        );
    }
    assert_eq!(seen[0], seen[1]);
    let config = flashfit_config::Config::load(Some(&cfg))?;
    let here = flashfit_outfits::experiments::variants(&config.experiments, "user-42");
    assert_eq!(seen[0], serde_json::to_value(&here)?);
    assert!(seen[0]["outfit_scorer"].is_string() && seen[0]["onboarding"].is_string());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("flashfit-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
