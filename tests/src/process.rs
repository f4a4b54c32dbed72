//! The real `flashfit worker quality` binary as a child process: SIGKILL mid-run loses nothing;
//! SIGTERM drains, commits and exits 0; `/health` and `/metrics` answer.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use flashfit_schema::StatusEvent;
use rdkafka::Message as _;
use tokio::process::{Child, Command};

use crate::support::*;

fn spawn_worker(stack: &Stack, admin_port: u16, extra: &[(&str, &str)]) -> anyhow::Result<Child> {
    let mut cmd = Command::new(flashfit_bin());
    let quality_only =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/quality.toml");
    cmd.arg("--pipeline")
        .arg(quality_only)
        .args(["worker", "quality"])
        .envs(stack.child_env())
        .env("FLASHFIT_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Ok(cmd.spawn()?)
}

/// Counts statuses per event id (duplicates included) from one long-lived tail.
struct StatusCounter {
    tail: flashfit_pipeline::watch::TopicTail,
    ids: HashSet<String>,
    counts: HashMap<String, usize>,
}

impl StatusCounter {
    fn new(stack: &Stack, ids: &HashSet<String>) -> anyhow::Result<Self> {
        Ok(StatusCounter {
            tail: stack.tail(&stack.topics.status())?,
            ids: ids.clone(),
            counts: HashMap::new(),
        })
    }

    /// Reads until `want` distinct ids have a status or `timeout` passes; returns how many have.
    async fn until(&mut self, want: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.counts.len() < want && Instant::now() < deadline {
            self.read(Duration::from_millis(500)).await;
        }
        self.counts.len()
    }

    /// Reads whatever arrives within `idle` of the previous message.
    async fn drain(&mut self, idle: Duration) {
        while self.read(idle).await {}
    }

    async fn read(&mut self, timeout: Duration) -> bool {
        let Some(m) = self.tail.recv(timeout).await else {
            return false;
        };
        if let Some(Ok(s)) = m.payload().map(serde_json::from_slice::<StatusEvent>)
            && let Some(id) = s.event_id.filter(|i| self.ids.contains(i))
        {
            *self.counts.entry(id).or_default() += 1;
        }
        true
    }
}

async fn publish_photos(stack: &Stack, tag: &str, n: usize) -> anyhow::Result<HashSet<String>> {
    let names: Vec<String> = photo_names()
        .into_iter()
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    let mut uris = Vec::new();
    for name in &names {
        uris.push(stack.put_upload(name, photo(name)).await?);
    }
    let events: Vec<_> = (0..n)
        .map(|i| upload_event(&format!("{tag}-{i:04}"), &uris[i % uris.len()]))
        .collect();
    stack.publish(&stack.producer()?, &events).await?;
    Ok(events.into_iter().map(|e| e.event_id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_and_restarted_loses_no_event() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let n = 120;
    let ids = publish_photos(&stack, "ev", n).await?;
    // Small batches so the kill lands mid-run.
    let slow = [
        ("FLASHFIT_RUNTIME__BATCH_SIZE", "2"),
        ("FLASHFIT_RUNTIME__CONCURRENCY", "1"),
    ];
    let mut first = spawn_worker(&stack, free_port(), &slow)?;

    // Wait until some, not all, statuses exist, then SIGKILL.
    let mut counter = StatusCounter::new(&stack, &ids)?;
    let seen = counter.until(10, Duration::from_secs(120)).await;
    anyhow::ensure!(seen >= 10, "worker made no progress before the kill");
    first.start_kill()?;
    first.wait().await?;
    counter.drain(Duration::from_millis(300)).await;
    let at_kill = counter.counts.len();
    anyhow::ensure!(
        at_kill < n,
        "the kill came too late to be mid-run ({at_kill} of {n} done)"
    );

    let mut second = spawn_worker(&stack, free_port(), &[])?;
    counter.until(n, Duration::from_secs(180)).await;
    counter.drain(Duration::from_secs(2)).await;
    second.start_kill()?;
    let missing: Vec<&String> = ids
        .iter()
        .filter(|i| !counter.counts.contains_key(*i))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events lost after SIGKILL: {missing:?}",
        missing.len()
    );
    let dups: usize = counter.counts.values().map(|c| c - 1).sum();
    eprintln!(
        "kill test: {n} events, killed after {at_kill} statuses, {dups} redelivered duplicates (at-least-once)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_zero() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = spawn_worker(&stack, port, &[])?;

    // /health answers once the worker runs.
    let started = Instant::now();
    let mut health = (0, String::new());
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(h) = http_get(&addr, "/health").await {
            health = h;
            if health.0 == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(health.0, 200, "health: {health:?}");
    assert!(health.1.contains("\"ok\""));

    let n = 30;
    let ids = publish_photos(&stack, "ev", n).await?;
    let watcher = stack.status_watcher()?;
    await_statuses(&watcher, &ids, Duration::from_secs(120)).await?;

    let (code, metrics) = http_get(&addr, "/metrics").await?;
    assert_eq!(code, 200);
    for series in [
        "flashfit_messages_received_total{stage=\"quality\"} 30",
        "flashfit_messages_produced_total{stage=\"quality\",topic=",
        "flashfit_messages_dead_lettered_total{reason=\"undecodable\",stage=\"quality\"} 0",
        "flashfit_errors_total{kind=\"transient\",stage=\"quality\"} 0",
        "flashfit_batch_duration_seconds_bucket",
        "flashfit_consumer_lag_messages{stage=\"quality\"}",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }

    let pid = worker.id().expect("pid").to_string();
    let stopped = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(35), worker.wait()).await??;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    eprintln!("SIGTERM to exit: {:?}", stopped.elapsed());

    // Everything was committed: a new worker in the same group reprocesses nothing.
    let mut again = spawn_worker(&stack, free_port(), &[])?;
    let marker = publish_photos(&stack, "marker", 1).await?;
    await_statuses(&stack.status_watcher()?, &marker, Duration::from_secs(120)).await?;
    let mut counter = StatusCounter::new(&stack, &ids)?;
    counter.until(n, Duration::from_secs(60)).await;
    counter.drain(Duration::from_secs(2)).await;
    again.start_kill()?;
    assert_eq!(counter.counts.len(), n);
    let dups: Vec<_> = counter.counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dups.is_empty(),
        "graceful shutdown should leave nothing to redeliver: {dups:?}"
    );
    Ok(())
}
