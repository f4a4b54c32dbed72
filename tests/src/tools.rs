//! Data engineers' tools (issue 14) end to end against the stack.

use std::time::Duration;

use flashfit_pipeline::dlq::{self, DlqFilter};
use flashfit_pipeline::progress::Progress;
use rdkafka::Message as _;

use crate::support::*;

/// An upload whose photo is missing is dead-lettered `not_found` by the quality worker; `dlq
/// list` counts it with its headers; after the photo is put (the cause fixed) `dlq redrive`
/// republishes it to `flashfit.uploads` with a header naming the redrive, the quality worker
/// processes it, and the same redrive run again republishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_then_redriven_once_after_the_cause_is_fixed() -> anyhow::Result<()>
{
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let good = stack.put_upload("cat.jpg", photo("cat.jpg")).await?;
    let late = good.replace("cat.jpg", "late.jpg");
    stack
        .publish(&stack.producer()?, &[stale_upload_event("late", &late)])
        .await?;
    run_worker_until(&stack.config, "quality", 1).await?;

    let k = &stack.config.kafka;
    let quality = DlqFilter::new(Some("quality".into()), None, None)?;
    let l = dlq::list(k, &quality, 5).await?;
    assert_eq!(l.counts["quality"]["not_found"], 1, "{l:?}");
    let h = &l.last[0].headers;
    assert_eq!(h["flashfit.source.topic"], stack.topics.uploads(), "{l:?}");
    let other = DlqFilter::new(None, Some("too_small".into()), Some("2026-01-01T00:00:00Z"))?;
    assert!(dlq::list(k, &other, 5).await?.counts.is_empty());
    assert!(DlqFilter::new(None, None, Some("yesterday")).is_err());

    // A dry run counts and changes nothing.
    let dry = dlq::redrive(k, &quality, true, &mut Progress::quiet()).await?;
    assert_eq!((dry.read, dry.republished), (1, 1), "{dry:?}");

    stack.put_upload("late.jpg", photo("cat.jpg")).await?;
    let r = dlq::redrive(k, &quality, false, &mut Progress::quiet()).await?;
    assert_eq!((r.read, r.republished, r.skipped), (1, 1, 0), "{r:?}");
    assert_eq!(r.targets[&stack.topics.uploads()], 1, "{r:?}");
    let uploads = stack
        .tail(&stack.topics.uploads())?
        .collect_until(Duration::from_secs(30), |v| v.len() >= 2)
        .await;
    let redriven = uploads
        .iter()
        .find_map(|m| flashfit_pipeline::watch::header(m, dlq::REDRIVE_HEADER));
    assert!(
        redriven.is_some_and(|id| id.starts_with(&r.group)),
        "the republished upload names its redrive"
    );
    let tail = stack.tail(&stack.topics.quality())?;
    run_worker_until(&stack.config, "quality", 1).await?;
    let out = tail
        .collect_until(Duration::from_secs(30), |v| !v.is_empty())
        .await;
    let rec: flashfit_schema::GarmentRecord =
        serde_json::from_slice(out.first().and_then(|m| m.payload()).unwrap_or_default())?;
    assert_eq!(rec.upload.event_id, "late");

    // The redrive keeps its position: nothing to republish the second time, nor by a redrive
    // of that reason alone (the same group).
    let again = dlq::redrive(k, &quality, false, &mut Progress::quiet()).await?;
    assert_eq!((again.read, again.republished), (0, 0), "{again:?}");
    let not_found = DlqFilter::new(Some("quality".into()), Some("not_found".into()), None)?;
    let again = dlq::redrive(k, &not_found, false, &mut Progress::quiet()).await?;
    assert_eq!((again.read, again.republished), (0, 0), "{again:?}");
    Ok(())
}

/// Produces `n` records with key `key`, `bytes` each, at create times `t0_ms + i` to `topic`
/// in one batch (all sent before any acknowledgement is awaited).
async fn produce_batch(
    stack: &Stack,
    topic: &str,
    key: &str,
    n: usize,
    bytes: usize,
    t0_ms: i64,
) -> anyhow::Result<()> {
    use rdkafka::producer::FutureRecord;
    let p = stack.producer()?;
    let value = vec![b'x'; bytes];
    let mut acks = Vec::new();
    for i in 0..n {
        let rec = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(&value[..])
            .timestamp(t0_ms + i as i64);
        acks.push(p.send_result(rec).map_err(|(e, _)| e)?);
    }
    for a in acks {
        a.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.timestamp_millis())
        .unwrap_or_default()
}

/// Three hours of a topic, ten records each (keys spread over the partitions): replayed by
/// offset and by time into other topics (exact counts, headers kept; the broker's
/// offsets-for-times answer and the timestamp search agree) and into a fresh consumer group
/// (its committed offsets, its lag and what a member then reads); a group with a live member
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_offset_and_time_into_topics_and_a_group() -> anyhow::Result<()> {
    use flashfit_pipeline::offsets::{Lookup, Method};
    use flashfit_pipeline::replay::{Position, ReplayOptions, Target, replay};
    let stack = Stack::new()?;
    let k = &stack.config.kafka;
    let src = format!("{}replay.src", stack.prefix);
    flashfit_runtime::kafka::ensure_topics(k, std::slice::from_ref(&src)).await?;
    let hours = [
        "2026-11-01T10:00:00Z",
        "2026-11-01T11:00:00Z",
        "2026-11-01T12:00:00Z",
    ];
    for h in hours {
        for key in 0..10 {
            produce_batch(&stack, &src, &format!("k{key}"), 1, 100, ms(h) + key).await?;
        }
    }
    let into = |name: &str, from: &str, to: &str, lookup| ReplayOptions {
        topic: src.clone(),
        partition: None,
        from: from.parse().expect("from"),
        to: to.parse().expect("to"),
        target: Target::Topic(format!("{}replay.{name}", stack.prefix)),
        dry_run: false,
        lookup,
    };
    // By offset: everything.
    let all = replay(
        k,
        &into("all", "earliest", "latest", Lookup::Auto),
        &mut Progress::quiet(),
    )
    .await?;
    assert_eq!(all.records, 30, "{all}");
    assert!(all.to_string().contains("replayed 30 records"), "{all}");
    let copied = read_all(
        &stack,
        &format!("{}replay.all", stack.prefix),
        Duration::from_secs(3),
    )
    .await?;
    assert_eq!(copied.len(), 30);
    // By time, the middle hour, both ways: the broker's answer (checked) and the search.
    let mut plans = Vec::new();
    for (name, lookup) in [("mid-auto", Lookup::Auto), ("mid-search", Lookup::Search)] {
        let r = replay(
            k,
            &into(name, hours[1], hours[2], lookup),
            &mut Progress::quiet(),
        )
        .await?;
        eprintln!("{name}: {r}");
        assert_eq!(r.records, 10, "{name}: {r}");
        let got = read_all(
            &stack,
            &format!("{}replay.{name}", stack.prefix),
            Duration::from_secs(3),
        )
        .await?;
        assert_eq!(got.len(), 10, "{name}");
        for m in &got {
            use rdkafka::Message as _;
            let ts = m.timestamp().to_millis().unwrap_or_default();
            assert!(
                (ms(hours[1])..ms(hours[2])).contains(&ts),
                "{name}: time {ts} copied"
            );
        }
        if lookup == Lookup::Search {
            assert!(
                r.partitions.iter().all(|p| p.start_by == Method::Search),
                "{r:?}"
            );
        }
        plans.push(
            r.partitions
                .iter()
                .map(|p| (p.partition, p.start, p.stop))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(plans[0], plans[1], "the broker path and the search agree");
    // A dry run copies nothing.
    let mut dry = into("dry", "earliest", "latest", Lookup::Auto);
    dry.dry_run = true;
    let r = replay(k, &dry, &mut Progress::quiet()).await?;
    assert!(r.to_string().contains("would replay 30"), "{r}");

    // Into a fresh group from the last hour: its offsets, its lag, what a member reads.
    let group = format!("{}replayer", stack.prefix);
    let to_group = |from: &str| ReplayOptions {
        topic: src.clone(),
        partition: None,
        from: from.parse().expect("from"),
        to: Position::Latest,
        target: Target::Group(group.clone()),
        dry_run: false,
        lookup: Lookup::Auto,
    };
    let r = replay(k, &to_group(hours[2]), &mut Progress::quiet()).await?;
    assert_eq!(r.records, 10, "{r}");
    let lag = flashfit_pipeline::lag::lag(k, &[(group.clone(), vec![src.clone()])]).await?;
    assert_eq!(lag.of(&group), 10, "{lag}");
    let member = {
        use rdkafka::consumer::Consumer;
        let c: rdkafka::consumer::StreamConsumer =
            flashfit_runtime::kafka::consumer_config(k, &group, 0)?.create()?;
        c.subscribe(&[src.as_str()])?;
        c
    };
    let mut read = 0;
    let mut wait = Duration::from_secs(40);
    while let Ok(Ok(m)) = tokio::time::timeout(wait, member.recv()).await {
        use rdkafka::Message as _;
        assert!(m.timestamp().to_millis().unwrap_or_default() >= ms(hours[2]));
        read += 1;
        wait = Duration::from_secs(3);
    }
    assert_eq!(read, 10);
    // While that member lives, the group is not moved.
    let e = replay(k, &to_group("earliest"), &mut Progress::quiet())
        .await
        .expect_err("live group");
    assert!(e.to_string().contains("live member"), "{e}");
    drop(member);
    // --to is for topics only.
    let mut bad = to_group("earliest");
    bad.to = Position::Offset(3);
    assert!(replay(k, &bad, &mut Progress::quiet()).await.is_err());
    Ok(())
}

/// `lag` against a known backlog of small records and of one batch of large ones (14 × 30 KB
/// on one partition: the batch after which the test stack's Tansu reports a wrong high
/// watermark): the lag counts every record either way, the oldest message's age is shown,
/// and a group moved to the end has no lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_small_and_large_record_backlogs() -> anyhow::Result<()> {
    use flashfit_pipeline::offsets::Lookup;
    use flashfit_pipeline::replay::{Position, ReplayOptions, Target, replay};
    let stack = Stack::new()?;
    let k = &stack.config.kafka;
    stack.ensure_topics(&["quality"]).await?;
    let uploads = stack.topics.uploads();
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..5 {
        produce_batch(
            &stack,
            &uploads,
            &format!("small-{i}"),
            1,
            200,
            now - 60_000,
        )
        .await?;
    }
    let groups = flashfit_pipeline::consumer_groups(
        &stack.config,
        &flashfit_pipeline::Pipeline::default_pipeline(),
    );
    let quality = format!("{}flashfit-quality", stack.prefix);
    let lag = flashfit_pipeline::lag::lag(k, &groups).await?;
    assert_eq!(lag.of(&quality), 5, "{lag}");
    let oldest = lag
        .rows
        .iter()
        .filter(|r| r.group == quality && r.lag > 0)
        .filter_map(|r| r.oldest_age_s)
        .fold(0.0, f64::max);
    assert!((50.0..600.0).contains(&oldest), "oldest {oldest} s: {lag}");
    assert!(
        lag.to_string().contains(&format!("lagging: {quality} 5")),
        "{lag}"
    );

    produce_batch(&stack, &uploads, "large", 14, 30_000, now).await?;
    let lag = flashfit_pipeline::lag::lag(k, &groups).await?;
    assert_eq!(lag.of(&quality), 19, "{lag}");
    let text = lag.to_string();
    if lag.rows.iter().any(|r| r.reported_end.is_some()) {
        assert!(text.contains("not trusted"), "{text}");
    }
    // The command prints the same, and one JSON object with --json.
    let v = json_output(
        tokio::process::Command::new(flashfit_bin())
            .args(["lag", "--json"])
            .envs(stack.child_env()),
    )
    .await?;
    let total: i64 = v["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| r["group"] == quality.as_str())
                .filter_map(|r| r["lag"].as_i64())
                .sum()
        })
        .unwrap_or_default();
    assert_eq!(total, 19, "{v}");

    // Moved to the end (as an operator skipping a backlog would): no lag.
    let r = replay(
        k,
        &ReplayOptions {
            topic: uploads.clone(),
            partition: None,
            from: Position::Latest,
            to: Position::Latest,
            target: Target::Group(quality.clone()),
            dry_run: false,
            lookup: Lookup::Auto,
        },
        &mut Progress::quiet(),
    )
    .await?;
    assert_eq!(r.records, 0, "{r}");
    let lag = flashfit_pipeline::lag::lag(k, &groups).await?;
    assert_eq!(lag.of(&quality), 0, "{lag}");
    Ok(())
}

/// `flashfit bench chain` runs the real worker binaries against the stack and reports every
/// stage (a smoke test of the command: figures are printed, never asserted on time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chain_reports_every_stage_of_the_deployed_chain() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let out = tokio::process::Command::new(flashfit_bin())
        .args([
            "bench",
            "chain",
            "--images",
            "6",
            "--profiles",
            "default",
            "--pace",
            "0.5",
            "--timeout",
            "240",
            "--repo",
        ])
        .arg(fixtures().join("../.."))
        .envs(stack.child_env())
        .env("FLASHFIT_LOG_FORMAT", "text")
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "bench chain failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        stdout.contains("default / chain:") && !stdout.contains("NOT processed"),
        "{stdout}"
    );
    for stage in ["quality", "detect", "classify", "attributes", "embed"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(stage))
            .ok_or_else(|| anyhow::anyhow!("no line for {stage}: {stdout}"))?;
        let cpu: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no CPU figure: {line}"))?;
        anyhow::ensure!(cpu > 0.0, "{stage} used no CPU: {line}");
        anyhow::ensure!(line.contains("peak RSS"), "{line}");
    }
    Ok(())
}
