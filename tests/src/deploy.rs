//! The deployment files, checked without a container engine (none runs here): the Compose file
//! against the Compose specification's schema, with a service for every worker; the alert
//! rules with promtool (syntax and unit tests); and every metric an alert or a dashboard panel
//! names scraped from live workers and `serve` started as the deployment runs them.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> String {
    std::env::var("FLASHFIT_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "/var/lib/flashfit/venv/bin/python".into())
}

fn worker_names() -> String {
    flashfit_schema::StageName::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn the_compose_file_follows_the_spec_and_runs_every_worker() -> anyhow::Result<()> {
    let r = repo();
    let v = json_output(
        tokio::process::Command::new(python())
            .arg(r.join("tests/check_compose.py"))
            .arg(r.join("docker-compose.yml"))
            .arg(r.join("infra/prometheus.yml"))
            .args(["--workers", &worker_names()]),
    )
    .await?;
    assert_eq!(v["problems"], 0, "{v}");
    assert_eq!(
        v["long_running"].as_array().map(Vec::len),
        Some(flashfit_schema::StageName::ALL.len() + 1),
        "every worker and serve: {v}"
    );
    Ok(())
}

#[tokio::test]
async fn the_kubernetes_manifests_render_and_validate_against_kubernetes_and_keda_schemas()
-> anyhow::Result<()> {
    let r = repo();
    let v = json_output(
        tokio::process::Command::new(python())
            .arg(r.join("tests/check_k8s.py"))
            .args(["--workers", &worker_names()])
            .current_dir(&r),
    )
    .await?;
    assert_eq!(v["problems"], 0, "{v}");
    for overlay in ["local", "production"] {
        assert_eq!(v["validated"][overlay]["failed"], 0, "{v}");
        assert_eq!(
            v["kinds"][overlay]["ScaledObject"],
            flashfit_schema::StageName::ALL.len(),
            "{v}"
        );
        // Deny by default, then serve's API and the metrics from monitoring.
        assert_eq!(v["kinds"][overlay]["NetworkPolicy"], 3, "{v}");
    }
    // Production's Kafka principals: every worker, serve, the upload service, the app
    // gateway and the operator, each a Strimzi KafkaUser.
    assert_eq!(
        v["validated"]["production"]["strimzi"],
        flashfit_schema::StageName::ALL.len() + 4,
        "{v}"
    );
    Ok(())
}

async fn promtool(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("promtool")
        .args(args)
        .current_dir(repo().join("infra/prometheus"))
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("promtool (Debian package `prometheus`): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "promtool {args:?}:\n{text}");
    Ok(text)
}

#[tokio::test]
async fn the_alert_rules_pass_promtool_and_their_unit_tests() -> anyhow::Result<()> {
    let checked = promtool(&["check", "rules", "alerts.yml"]).await?;
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]).await?;
    assert!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}

/// The metric names in `text` (PromQL or exposition): `flashfit_…` identifiers.
fn flashfit_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("flashfit_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Scrapes `path` on `addr` until `ready` holds for the body (60 s at most).
async fn scrape(addr: &str, path: &str, ready: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = http_get(addr, path).await
            && body.contains(ready)
        {
            return Ok(body);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{addr}{path} never showed `{ready}`"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_an_alert_or_panel_names_is_exported_by_a_live_worker() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("flashfit-metrics-{id}"));
    std::fs::create_dir_all(&dir)?;
    let mut exported = BTreeSet::new();
    let mut children = Vec::new();
    // `flashfit ARGS` seeing the stack, with `addr_var` set to a free port: (child, address).
    let spawn =
        |args: &[&str], addr_var: &str| -> anyhow::Result<(tokio::process::Child, String)> {
            let addr = format!("127.0.0.1:{}", free_port());
            let child = tokio::process::Command::new(flashfit_bin())
                .args(args)
                .envs(stack.child_env())
                .env(addr_var, &addr)
                .env("FLASHFIT_WAREHOUSE_URI", format!("s3://flashfit/wh-{id}"))
                .env(
                    "FLASHFIT_LANCEDB_URI",
                    format!("file://{}", dir.join("lance").display()),
                )
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            Ok((child, addr))
        };
    // The workers without models (the model stages run the same runtime and export the same
    // set) and serve.
    let mut targets = Vec::new();
    for w in ["quality", "parquet", "lance", "feedback", "kpi"] {
        let (child, addr) = spawn(&["worker", w], "FLASHFIT_ADMIN_ADDR")?;
        children.push(child);
        targets.push((addr, "flashfit_messages_received_total{"));
    }
    let (child, addr) = spawn(&["serve"], "FLASHFIT_HTTP_ADDR")?;
    children.push(child);
    targets.push((addr, "flashfit_recommend_phase_seconds"));
    for (addr, ready) in &targets {
        let body = scrape(addr, "/metrics", ready).await?;
        exported.extend(flashfit_names(&body));
    }
    // The sinks' write counters appear once their stage has started.
    for (addr, _) in &targets[1..3] {
        exported.extend(flashfit_names(
            &scrape(addr, "/metrics", "flashfit_sink_rows_written_total").await?,
        ));
    }
    for c in children.iter_mut() {
        let _ = c.start_kill();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let r = repo();
    let mut named = flashfit_names(&std::fs::read_to_string(
        r.join("infra/prometheus/alerts.yml"),
    )?);
    named.extend(flashfit_names(&std::fs::read_to_string(
        r.join("infra/grafana/dashboards/flashfit.json"),
    )?));
    assert!(named.len() >= 10, "{named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named by alerts or panels but not exported: {missing:?}\nexported: {exported:?}"
    );
    eprintln!(
        "deploy: {} metric names checked against live workers",
        named.len()
    );
    Ok(())
}

/// The Kafka permissions in the repository (`kafka-acls` commands, Strimzi users, the
/// production overlay's credential patches) are what `flashfit acls` renders from the
/// pipeline on the default names: re-render them after a change (docs/security.md).
#[tokio::test]
async fn the_committed_kafka_permissions_are_the_rendered_ones() -> anyhow::Result<()> {
    for (format, file) in [
        ("kafka-acls", "infra/kafka/acls.sh"),
        ("strimzi", "infra/k8s/overlays/production/kafka-users.yaml"),
        (
            "k8s-patches",
            "infra/k8s/overlays/production/kafka-auth.yaml",
        ),
    ] {
        let out = tokio::process::Command::new(flashfit_bin())
            .args(["acls", "--format", format])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "{out:?}");
        let rendered = String::from_utf8(out.stdout)?;
        let path = repo().join(file);
        if std::env::var_os("FLASHFIT_BLESS").is_some() {
            std::fs::write(&path, &rendered)?;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "{file} differs from `flashfit acls --format {format}`: run \
             `FLASHFIT_BLESS=1 cargo nextest run -E 'test(the_committed_kafka_permissions)'`"
        );
    }
    Ok(())
}
