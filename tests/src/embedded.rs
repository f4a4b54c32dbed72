//! `flashfit run` on embedded defaults: no external services at all.

use std::time::Duration;

use crate::support::*;

/// `flashfit run --json` with `--pipeline`, in `cwd` (where the embedded defaults put
/// `warehouse/`, `lancedb/` and `flashfit.db`): a process environment with nothing but the
/// model files.
fn flashfit_run(
    pipeline: Option<&str>,
    dir: &std::path::Path,
    cwd: &std::path::Path,
) -> tokio::process::Command {
    let mut cmd = flashfit_cmd(cwd);
    if let Some(p) = pipeline {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        cmd.arg("--pipeline").arg(repo.join(p));
    }
    cmd.args([
        "run",
        "--json",
        "--exit-when-done",
        "--timeout",
        "150",
        "--ingest",
    ])
    .arg(dir);
    cmd
}

/// The `flashfit` binary in `cwd` with nothing inherited that could point it at the local
/// stack.
fn flashfit_cmd(cwd: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(flashfit_bin());
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLASHFIT_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()));
    for var in ["FLASHFIT_MODELS_DIR", "ORT_DYLIB_PATH", "HOME"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

/// Runs a `flashfit run --json`; returns its photo lines and its stderr (the summary).
async fn run_json(
    mut cmd: tokio::process::Command,
    limit: Duration,
) -> anyhow::Result<(Vec<serde_json::Value>, String)> {
    // stderr goes to a file so a run that overstays `limit` is killed and still explains itself.
    let log = std::env::temp_dir().join(format!("flashfit-run-{}.log", uuid::Uuid::new_v4()));
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let Ok(out) = out else {
        anyhow::bail!("still running after {limit:?} (killed); its stderr:\n{stderr}");
    };
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let lines = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok((lines, stderr))
}

fn temp_dir(tag: &str) -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("flashfit-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashfit_run_quality_alone_needs_no_external_services() -> anyhow::Result<()> {
    let (dir, names) = photos_in_temp_dir("embedded")?;
    let cwd = temp_dir("embedded-cwd")?;
    let run = run_json(
        flashfit_run(Some("pipelines/quality.toml"), &dir, &cwd),
        Duration::from_secs(120),
    )
    .await;
    let parquet = cwd.join("warehouse/garments").exists();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&cwd);
    let (lines, stderr) = run?;
    assert_eq!(lines.len(), names.len(), "one line per photo:\n{lines:?}");
    let count = |s: &str| lines.iter().filter(|l| l["status"] == s).count();
    assert_eq!(count("rejected"), 1, "cat_small.jpg is under 224 px");
    assert_eq!(count("processed"), names.len() - 1);
    let small = lines
        .iter()
        .find(|l| l["file"] == "cat_small.jpg")
        .expect("cat_small.jpg");
    assert_eq!(
        small["reasons"],
        serde_json::json!(["too_small"]),
        "{small}"
    );
    assert!(stderr.contains("embedded broker"), "{stderr}");
    // Without an embed stage there are no vectors, but the Parquet sink ran.
    assert!(parquet, "no warehouse/garments:\n{stderr}");
    assert!(stderr.contains("no vectors"), "{stderr}");
    Ok(())
}

/// The README's first command: `flashfit run` on embedded defaults runs the whole system —
/// the five stages, both sinks, the feedback and kpi workers — reports what each photo became,
/// and leaves a wardrobe that the commands it suggests can search, recommend from and query.
/// A second run of the same folder adds no row and no vector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashfit_run_leaves_a_searchable_wardrobe_and_a_second_run_adds_nothing()
-> anyhow::Result<()> {
    let (dir, names) = photos_in_temp_dir("chain")?;
    let cwd = temp_dir("chain-cwd")?;
    let res = whole_system(&dir, &cwd, &names).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&cwd);
    res
}

async fn whole_system(
    dir: &std::path::Path,
    cwd: &std::path::Path,
    names: &[String],
) -> anyhow::Result<()> {
    let (lines, stderr) = run_json(flashfit_run(None, dir, cwd), Duration::from_secs(300)).await?;
    assert_eq!(lines.len(), names.len(), "{stderr}");
    let processed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["status"] == "processed")
        .collect();
    for l in &lines {
        if l["status"] == "processed" {
            assert_eq!(l["stage"], "embed", "{l}");
            // What FlashFit found is on the line.
            assert!(l["category"].is_string(), "{l}");
            assert!(l["category_confidence"].as_f64().is_some(), "{l}");
            assert!(l["color_primary"].is_string(), "{l}");
        } else {
            // Too small for quality, or not clothing for classify: said, with the reason.
            let at = (l["status"].as_str(), l["stage"].as_str());
            assert!(
                at == (Some("rejected"), Some("quality"))
                    || (at == (Some("rejected"), Some("classify"))
                        && l["reasons"] == serde_json::json!(["not_clothing"])),
                "{l}"
            );
            assert!(!l["reasons"].as_array().expect("reasons").is_empty(), "{l}");
        }
    }
    // The product shots are wardrobe items; the cat, the coffee, the brick wall, the rocket,
    // the motorcycle and the astronomy and microscopy photos are not.
    let status = |file: &str| {
        lines
            .iter()
            .find(|l| l["file"] == file)
            .map(|l| {
                (
                    l["status"].as_str().unwrap_or_default().to_owned(),
                    l["reasons"].clone(),
                )
            })
            .unwrap_or_else(|| panic!("{file}: no line"))
    };
    for file in names.iter().filter(|n| n.starts_with("fmnist_")) {
        assert_eq!(status(file).0, "processed", "{file}");
    }
    for file in [
        "cat.jpg",
        "coffee.jpg",
        "coffee.png",
        "brick.jpg",
        "hubble.jpg",
        "motorcycle.jpg",
        "retina.jpg",
        "rocket.jpg",
    ] {
        assert_eq!(
            status(file),
            ("rejected".to_owned(), serde_json::json!(["not_clothing"])),
            "{file}"
        );
    }
    let n = processed.len();
    assert!(
        stderr.contains(&format!("{n} garments searchable"))
            && stderr.contains(&format!("{n} rows in")),
        "{stderr}"
    );
    // The next commands the summary suggests work on what the run wrote.
    let next: Vec<String> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("next, from "))
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(next.len(), 3, "{stderr}");
    // 1. Text search: the user's garments, best first.
    let search = &next[0];
    assert!(
        search.contains(" search --user local-user --text "),
        "{search}"
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(search)
        .current_dir(cwd)
        .env_clear()
        .envs(flashfit_env())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{search}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(!hits.is_empty(), "{search} found nothing");
    let ids: std::collections::HashSet<&str> = processed
        .iter()
        .filter_map(|l| l["garment_id"].as_str())
        .collect();
    for h in &hits {
        assert!(
            ids.contains(h["garment_id"].as_str().unwrap_or_default()),
            "{h}"
        );
    }
    // 2. Outfits and search over HTTP from `flashfit serve` on the same directory.
    let port = free_port();
    let mut serve = flashfit_cmd(cwd)
        .arg("serve")
        .env("FLASHFIT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .kill_on_drop(true)
        .spawn()?;
    let addr = format!("127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if http_get(&addr, "/v1/users/local-user/search?text=clothing&k=100")
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(up, "serve did not start");
    let (code, body) = http_get(&addr, "/v1/users/local-user/search?text=clothing&k=100").await?;
    assert_eq!(code, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(n), "{body}");
    let (code, body) = http_get(&addr, "/v1/users/local-user/outfits?k=3").await?;
    assert_eq!(code, 200, "{body}");
    let outfits: serde_json::Value = serde_json::from_str(&body)?;
    assert!(outfits["outfits"].is_array(), "{body}");
    let _ = serve.kill().await;
    // 3. DuckDB over the Parquet table, as printed.
    let duck = &next[2];
    let sql = duck
        .strip_prefix("duckdb -c \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a duckdb command: {duck}"));
    let rows = duckdb_rows(cwd, sql).await?;
    assert_eq!(rows.len(), n, "{sql}: {rows:?}");
    // A second run of the same folder publishes nothing and adds no row or vector.
    let (again, stderr2) = run_json(flashfit_run(None, dir, cwd), Duration::from_secs(300)).await?;
    let stored = again.iter().filter(|l| l["status"] == "stored").count();
    assert_eq!(stored, n, "{again:?}");
    assert!(
        stderr2.contains(&format!("{n} garments searchable")),
        "{stderr2}"
    );
    assert!(stderr2.contains(&format!("{n} rows in")), "{stderr2}");
    for l in again.iter().filter(|l| l["status"] == "stored") {
        let first = processed
            .iter()
            .find(|p| p["file"] == l["file"])
            .expect("same photo");
        assert_eq!(first["garment_id"], l["garment_id"]);
        assert_eq!(first["category"], l["category"], "{l}");
    }
    assert_eq!(duckdb_rows(cwd, sql).await?.len(), n);
    Ok(())
}

/// PATH, HOME and the model variables: what a user's shell has after the quickstart.
/// SIGTERM while `flashfit run --ingest` waits for the chain: the workers drain, and the run
/// exits non-zero at once saying the ingest was cut short, instead of waiting out `--timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashfit_run_stops_promptly_on_sigterm_mid_ingest() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    let (dir, _) = photos_in_temp_dir("sigterm")?;
    let cwd = temp_dir("sigterm-cwd")?;
    let mut child = flashfit_run(None, &dir, &cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let published = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(l) = lines.next_line().await? {
            seen.push_str(&l);
            seen.push('\n');
            if l.contains("published") {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    anyhow::ensure!(
        matches!(published, Ok(Ok(true))),
        "never published:\n{seen}"
    );
    sigterm(&child)?;
    let started = std::time::Instant::now();
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            rest.push_str(&l);
            rest.push('\n');
        }
        rest
    });
    // The shutdown deadline (30 s by default) bounds the workers' drain.
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let took = started.elapsed();
    let rest = rest.await?;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&cwd);
    let status =
        status.map_err(|_| anyhow::anyhow!("still running 60 s after SIGTERM:\n{rest}"))??;
    assert!(
        !status.success(),
        "a cut-short ingest is not a success:\n{rest}"
    );
    assert!(
        rest.contains("stopped before every ingested photo was reported"),
        "{rest}"
    );
    eprintln!(
        "flashfit run exited {:.1} s after SIGTERM",
        took.as_secs_f64()
    );
    Ok(())
}

fn flashfit_env() -> Vec<(String, String)> {
    ["PATH", "HOME", "FLASHFIT_MODELS_DIR", "ORT_DYLIB_PATH"]
        .iter()
        .filter_map(|v| std::env::var(v).ok().map(|x| ((*v).to_owned(), x)))
        .collect()
}

/// Runs `sql` with DuckDB (Python package) in `cwd`; the rows as JSON arrays.
async fn duckdb_rows(cwd: &std::path::Path, sql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let python = std::env::var("FLASHFIT_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "/var/lib/flashfit/venv/bin/python".into());
    let out = tokio::process::Command::new(python)
        .args([
            "-c",
            "import duckdb, json, sys; print(json.dumps(duckdb.sql(sys.argv[1]).fetchall(), default=str))",
            sql,
        ])
        .current_dir(cwd)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
