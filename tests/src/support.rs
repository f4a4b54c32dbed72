use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use flashfit_config::{Config, Secret};
use flashfit_pipeline::watch::{StatusWatcher, TopicTail};
use flashfit_schema::{StatusEvent, Topics, UploadEvent};
use flashfit_storage::Location;
use flashfit_storage::object_store::ObjectStoreExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// One test's view of the stack: a config pointing at it, with a private topic prefix.
pub struct Stack {
    pub config: Config,
    pub prefix: String,
    pub topics: Topics,
    pub uploads: Location,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Stack {
    pub fn new() -> anyhow::Result<Self> {
        let prefix = format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut env: Vec<(String, String)> = vec![
            (
                "FLASHFIT_KAFKA_BROKERS".into(),
                env_or("FLASHFIT_KAFKA_BROKERS", "127.0.0.1:9092"),
            ),
            (
                "FLASHFIT_UPLOADS_URI".into(),
                env_or("FLASHFIT_UPLOADS_URI", "s3://flashfit/uploads"),
            ),
            (
                "AWS_ACCESS_KEY_ID".into(),
                env_or("AWS_ACCESS_KEY_ID", "flashfit"),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                env_or("AWS_SECRET_ACCESS_KEY", "flashfit-secret"),
            ),
            ("AWS_REGION".into(), env_or("AWS_REGION", "us-east-1")),
            (
                "AWS_ENDPOINT_URL".into(),
                env_or("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"),
            ),
            ("AWS_ALLOW_HTTP".into(), env_or("AWS_ALLOW_HTTP", "true")),
            (
                "FLASHFIT_DATABASE_URL".into(),
                env_or(
                    "FLASHFIT_DATABASE_URL",
                    "postgres://flashfit@127.0.0.1:5433/flashfit",
                ),
            ),
            ("FLASHFIT_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
            ("FLASHFIT_KAFKA__TOPIC_PREFIX".into(), prefix.clone()),
            (
                "FLASHFIT_KAFKA__GROUP_PREFIX".into(),
                format!("{prefix}flashfit"),
            ),
            // Fail over quickly when a test kills a worker.
            ("FLASHFIT_KAFKA__SESSION_TIMEOUT_MS".into(), "6000".into()),
            ("FLASHFIT_KAFKA__HEARTBEAT_INTERVAL_MS".into(), "500".into()),
        ];
        env.push(("FLASHFIT_RUNTIME__LINGER_MS".into(), "20".into()));
        // The fixture photos are half non-clothing on purpose (the cat, the coffee, the
        // rocket: decoding, EXIF, quality and hostile-input cases); the delivery, sink and fault
        // tests count them through every stage, so here they are flagged, not rejected. The
        // `not_clothing` verdict has its own tests (flashfit-eval's floors, the README's run).
        env.push(("FLASHFIT_CLASSIFY__NOT_CLOTHING".into(), "flag".into()));
        let config = Config::from_sources(None, env)?;
        let uploads = Location::open(
            config.uploads_uri.as_deref().unwrap_or_default(),
            &config.s3,
        )?;
        let topics = Topics::new(prefix.clone());
        Ok(Stack {
            config,
            prefix,
            topics,
            uploads,
        })
    }

    /// The environment a `flashfit` child process needs to see this stack as the test does.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let s = |x: &Option<Secret>| {
            x.as_ref()
                .map(|v| v.expose().to_owned())
                .unwrap_or_default()
        };
        vec![
            (
                "FLASHFIT_KAFKA_BROKERS".into(),
                c.kafka.brokers.clone().unwrap_or_default(),
            ),
            (
                "FLASHFIT_UPLOADS_URI".into(),
                c.uploads_uri.clone().unwrap_or_default(),
            ),
            ("AWS_ACCESS_KEY_ID".into(), s(&c.s3.access_key_id)),
            ("AWS_SECRET_ACCESS_KEY".into(), s(&c.s3.secret_access_key)),
            ("AWS_REGION".into(), c.s3.region.clone().unwrap_or_default()),
            (
                "AWS_ENDPOINT_URL".into(),
                c.s3.endpoint_url.clone().unwrap_or_default(),
            ),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            (
                "FLASHFIT_DATABASE_URL".into(),
                c.database_url.expose().to_owned(),
            ),
            ("FLASHFIT_KAFKA__TOPIC_PREFIX".into(), self.prefix.clone()),
            (
                "FLASHFIT_KAFKA__GROUP_PREFIX".into(),
                format!("{}flashfit", self.prefix),
            ),
            ("FLASHFIT_KAFKA__SESSION_TIMEOUT_MS".into(), "6000".into()),
            ("FLASHFIT_KAFKA__HEARTBEAT_INTERVAL_MS".into(), "500".into()),
            ("FLASHFIT_LOG_FORMAT".into(), "json".into()),
            ("FLASHFIT_CLASSIFY__NOT_CLOTHING".into(), "flag".into()),
        ]
    }

    /// Puts bytes into the uploads bucket, in the folder of [`upload_event`]'s user, and
    /// returns their `s3://` URI.
    pub async fn put_upload(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
        self.put_upload_of(TEST_USER, name, bytes).await
    }

    /// [`TestStack::put_upload`] into `user`'s folder.
    pub async fn put_upload_of(
        &self,
        user: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let path = self.uploads.child(&format!(
            "{user}/{}/{name}",
            self.prefix.trim_end_matches('.')
        ))?;
        self.uploads
            .store()
            .put(&path, bytes.into())
            .await
            .with_context(|| "S3 put failed: is the stack up? run `bash infra/up.sh`")?;
        Ok(self.uploads.uri_of(&path))
    }

    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(flashfit_runtime::kafka::producer(&self.config.kafka)?)
    }

    pub async fn ensure_topics(&self, stages: &[&str]) -> anyhow::Result<()> {
        let mut t = vec![
            self.topics.uploads(),
            self.topics.status(),
            self.topics.quality(),
        ];
        t.extend(stages.iter().map(|s| self.topics.dlq(s)));
        for s in stages {
            let stage: flashfit_schema::StageName =
                s.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            t.extend(self.topics.output_of(stage));
        }
        t.dedup();
        flashfit_runtime::kafka::ensure_topics(&self.config.kafka, &t).await?;
        Ok(())
    }

    /// Publishes raw (key, value) pairs to the uploads topic.
    pub async fn publish_raw(
        &self,
        p: &FutureProducer,
        msgs: &[(Vec<u8>, Vec<u8>)],
    ) -> anyhow::Result<()> {
        self.publish_to(p, &self.topics.uploads(), msgs).await
    }

    /// Publishes raw (key, value) pairs to `topic`.
    pub async fn publish_to(
        &self,
        p: &FutureProducer,
        topic: &str,
        msgs: &[(Vec<u8>, Vec<u8>)],
    ) -> anyhow::Result<()> {
        for (k, v) in msgs {
            p.send(
                FutureRecord::to(topic).key(k).payload(v),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    pub async fn publish(&self, p: &FutureProducer, events: &[UploadEvent]) -> anyhow::Result<()> {
        flashfit_pipeline::ingest::publish(p, &self.topics.uploads(), events).await?;
        Ok(())
    }

    pub fn status_watcher(&self) -> anyhow::Result<StatusWatcher> {
        Ok(StatusWatcher::new(&self.config.kafka)?)
    }

    pub fn tail(&self, topic: &str) -> anyhow::Result<TopicTail> {
        Ok(TopicTail::new(&self.config.kafka, topic)?)
    }
}

/// The user of [`upload_event`].
pub const TEST_USER: &str = "u-test";

pub fn upload_event(id: &str, uri: &str) -> UploadEvent {
    UploadEvent {
        event_id: id.to_owned(),
        user_id: TEST_USER.into(),
        garment_id: format!("g-{id}"),
        image_uri: uri.to_owned(),
        uploaded_at: Utc::now(),
        kind: None,
    }
}

/// An upload event published an hour ago: past `[quality] not_found_grace_ms`, so a missing
/// object is final at once.
pub fn stale_upload_event(id: &str, uri: &str) -> UploadEvent {
    let mut e = upload_event(id, uri);
    e.uploaded_at = Utc::now() - chrono::Duration::hours(1);
    e
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn photo(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("photos").join(name)).expect("fixture photo")
}

pub fn photo_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures().join("photos"))
        .expect("photos dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A fresh temporary folder holding every fixture photo; returns it and the photo names.
pub fn photos_in_temp_dir(tag: &str) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let dir = std::env::temp_dir().join(format!("flashfit-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let names = photo_names();
    for n in &names {
        std::fs::write(dir.join(n), photo(n))?;
    }
    Ok((dir, names))
}

/// Waits for the statuses of `ids`; fails listing the missing ones.
pub async fn await_statuses(
    w: &StatusWatcher,
    ids: &HashSet<String>,
    timeout: Duration,
) -> anyhow::Result<std::collections::HashMap<String, StatusEvent>> {
    let seen = w.wait_for(ids, timeout, |_| {}).await;
    let missing: Vec<&String> = ids.iter().filter(|i| !seen.contains_key(*i)).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "no status within {timeout:?} for {} events: {missing:?}",
        missing.len()
    );
    Ok(seen)
}

/// The `flashfit` binary built beside this test binary.
pub fn flashfit_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("flashfit");
    assert!(
        bin.exists(),
        "{} missing: build it first (`cargo build -p flashfit`; infra/test.sh does)",
        bin.display()
    );
    bin
}

/// A minimal HTTP GET on loopback (status code, body).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (code, _, body) = http_get_with(addr, path, &[]).await?;
    Ok((code, body))
}

/// `GET path` with extra `headers`: the status code, the response head and the body.
pub async fn http_get_with(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let code = buf.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    Ok((code, head, body))
}

/// A free loopback port for a child's admin server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The photos the chain tests use: three pass quality (a dressed person, a boot, a cup), one
/// is rejected (too small).
pub const CHAIN_PHOTOS: [&str; 4] = [
    "person_suit.jpg",
    "fmnist_ankle_boot.png",
    "coffee.jpg",
    "cat_small.jpg",
];

/// Uploads [`CHAIN_PHOTOS`], publishes their events, runs every stage of the default pipeline
/// in this process until each event has a status, then stops the stages.
pub async fn run_chain(
    stack: &Stack,
) -> anyhow::Result<std::collections::HashMap<String, StatusEvent>> {
    run_chain_round(stack, None).await
}

/// [`run_chain`] again for the same garments, as a reprocessing would: new events (event id
/// `<photo>#<round>`) for the same garment ids.
pub async fn run_chain_round(
    stack: &Stack,
    round: Option<&str>,
) -> anyhow::Result<std::collections::HashMap<String, StatusEvent>> {
    let watcher = stack.status_watcher()?;
    let mut events = Vec::new();
    for name in CHAIN_PHOTOS {
        let uri = stack.put_upload(name, photo(name)).await?;
        let mut e = upload_event(name, &uri);
        if let Some(r) = round {
            e.event_id = format!("{name}#{r}");
        }
        events.push(e);
    }
    stack.publish(&stack.producer()?, &events).await?;
    let ids: std::collections::HashSet<String> =
        events.iter().map(|e| e.event_id.clone()).collect();
    run_stages_until(stack, &ids, &watcher).await
}

/// Runs every stage of the default pipeline in this process until each of `ids` has a status
/// (`watcher` started before the events were published), then stops the stages.
pub async fn run_stages_until(
    stack: &Stack,
    ids: &HashSet<String>,
    watcher: &StatusWatcher,
) -> anyhow::Result<std::collections::HashMap<String, StatusEvent>> {
    let pipeline = flashfit_pipeline::Pipeline::default_pipeline();
    let config = stack.config.clone();
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move {
        let stages = pipeline
            .stages
            .iter()
            .map(|s| flashfit_pipeline::build_stage(*s, &config, &pipeline))
            .collect::<flashfit_pipeline::Result<Vec<_>>>()?;
        flashfit_pipeline::run_stages(&config, stages, flashfit_runtime::Metrics::new(), t).await
    });
    let seen = await_statuses(watcher, ids, std::time::Duration::from_secs(240)).await;
    token.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(30), task).await???;
    seen
}

/// Every message of `topic`, read by a fresh group from the start until `idle` passes without
/// one.
pub async fn read_all(
    stack: &Stack,
    topic: &str,
    idle: Duration,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    let tail = stack.tail(topic)?;
    let mut out = Vec::new();
    // The first fetch after joining may take a while on Tansu; later ones are quick.
    let mut wait = Duration::from_secs(30);
    while let Some(m) = tail.recv(wait).await {
        out.push(m);
        wait = idle;
    }
    Ok(out)
}

/// Runs the worker `name` in this process until it has received `records` messages (or 90 s
/// pass), lets its last commits happen, and stops it.
pub async fn run_worker_until(config: &Config, name: &str, records: u64) -> anyhow::Result<()> {
    let stage_name: flashfit_schema::StageName =
        name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let c = flashfit_pipeline::worker_config(stage_name, config);
    let stage = flashfit_pipeline::build_stage(
        stage_name,
        &c,
        &flashfit_pipeline::Pipeline::default_pipeline(),
    )?;
    let metrics = flashfit_runtime::Metrics::new();
    let received = metrics.stage(name);
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    let task =
        tokio::spawn(
            async move { flashfit_pipeline::run_stages(&c, vec![stage], metrics, t).await },
        );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline && received.count("received", None) < records {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await???;
    anyhow::ensure!(
        received.count("received", None) >= records,
        "{name} received {} of {records} messages",
        received.count("received", None)
    );
    Ok(())
}

/// Runs one of the analysts' reader scripts in `tests/` on `uri`; returns its JSON.
pub async fn python_check(
    stack: &Stack,
    script: &str,
    uri: &str,
) -> anyhow::Result<serde_json::Value> {
    let python = std::env::var("FLASHFIT_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "/var/lib/flashfit/venv/bin/python".into());
    json_output(
        tokio::process::Command::new(python)
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
            .arg(uri)
            .envs(stack.child_env()),
    )
    .await
}

/// Runs `cmd`; fails with its stderr unless it succeeds; returns its stdout parsed as JSON.
pub async fn json_output(cmd: &mut tokio::process::Command) -> anyhow::Result<serde_json::Value> {
    let out = cmd.output().await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Reads at least `n` records from each contract topic (name without the test's prefix) and
/// validates every one against its schema in `schemas/` with the Python `jsonschema` package
/// (`tests/validate_records.py`): the schemas derived from the types must accept what the
/// workers really write. Returns the script's JSON (`validated`: count per topic).
pub async fn validate_topic_records(
    stack: &Stack,
    topics: &[(&str, usize)],
) -> anyhow::Result<serde_json::Value> {
    use rdkafka::Message as _;
    let dir = std::env::temp_dir().join(format!("flashfit-records-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    for (topic, n) in topics {
        let tail = stack.tail(&format!("{}{topic}", stack.prefix))?;
        let msgs = tail
            .collect_until(Duration::from_secs(30), |v| v.len() >= *n)
            .await;
        anyhow::ensure!(msgs.len() >= *n, "{topic}: {} of {n} records", msgs.len());
        let mut lines = String::new();
        for m in &msgs {
            lines.push_str(&String::from_utf8_lossy(m.payload().unwrap_or_default()));
            lines.push('\n');
        }
        std::fs::write(dir.join(format!("{topic}.jsonl")), lines)?;
    }
    let v = python_check(stack, "validate_records.py", &dir.to_string_lossy()).await;
    let _ = std::fs::remove_dir_all(&dir);
    v
}

/// Sends SIGTERM to a child process (what an orchestrator does to stop it).
pub fn sigterm(child: &tokio::process::Child) -> anyhow::Result<()> {
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("child has exited"))?;
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?
        .success();
    anyhow::ensure!(ok, "kill -TERM {pid} failed");
    Ok(())
}

/// The pipeline file of the quality-only tests.
pub fn quality_pipeline() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/quality.toml")
}

/// `flashfit --pipeline pipelines/quality.toml worker <name>` as a child process seeing
/// `stack`, its log in a temporary file (named in failures).
pub fn spawn(
    stack: &Stack,
    name: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<tokio::process::Child> {
    spawn_cmd(
        stack,
        &[
            "--pipeline",
            &quality_pipeline().display().to_string(),
            "worker",
            name,
        ],
        extra,
    )
}

/// `flashfit ARGS…` as a child process seeing `stack`, its log in a temporary file.
pub fn spawn_cmd(
    stack: &Stack,
    args: &[&str],
    extra: &[(&str, String)],
) -> anyhow::Result<tokio::process::Child> {
    Ok(spawn_logged(stack, args, extra)?.0)
}

/// [`spawn_cmd`], also returning the log file's path.
pub fn spawn_logged(
    stack: &Stack,
    args: &[&str],
    extra: &[(&str, String)],
) -> anyhow::Result<(tokio::process::Child, std::path::PathBuf)> {
    let name = args.last().copied().unwrap_or("flashfit");
    let log = std::env::temp_dir().join(format!(
        "flashfit-test-{}-{name}-{}.log",
        stack.prefix.trim_end_matches('.'),
        uuid::Uuid::new_v4().simple()
    ));
    let file = std::fs::File::create(&log)?;
    let mut cmd = tokio::process::Command::new(flashfit_bin());
    cmd.args(args)
        .envs(stack.child_env())
        .env("FLASHFIT_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Ok((cmd.spawn()?, log))
}
