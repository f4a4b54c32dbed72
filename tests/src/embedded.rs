//! `flashfit run` on embedded defaults: no external services at all.

use std::time::Duration;

use crate::support::*;

/// `flashfit run` with `--pipeline`: a process environment with nothing but the model files.
fn flashfit_run(pipeline: Option<&str>, dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(flashfit_bin());
    if let Some(p) = pipeline {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        cmd.arg("--pipeline").arg(repo.join(p));
    }
    cmd.args(["run", "--exit-when-done", "--timeout", "150", "--ingest"])
        .arg(dir)
        // Nothing inherited may point it at the local stack.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashfit_run_quality_alone_needs_no_external_services() -> anyhow::Result<()> {
    let (dir, names) = photos_in_temp_dir("embedded")?;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        flashfit_run(Some("pipelines/quality.toml"), &dir).output(),
    )
    .await??;
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        lines.len(),
        names.len(),
        "one status line per photo:\n{stdout}"
    );
    let count = |s: &str| lines.iter().filter(|l| l["status"]["status"] == s).count();
    assert_eq!(count("rejected"), 1, "cat_small.jpg is under 224 px");
    assert_eq!(count("processed"), names.len() - 1);
    assert!(stderr.contains("embedded broker"), "{stderr}");
    Ok(())
}

/// The default pipeline (quality → detect → classify → attributes → embed) in one process, as
/// the README's first command runs it: every photo that passes quality is processed by `embed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashfit_run_takes_every_passing_photo_through_the_whole_chain() -> anyhow::Result<()> {
    let (dir, names) = photos_in_temp_dir("chain")?;
    let out =
        tokio::time::timeout(Duration::from_secs(200), flashfit_run(None, &dir).output()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), names.len());
    for l in &lines {
        let s = &l["status"];
        if s["status"] == "processed" {
            assert_eq!(s["stage"], "embed", "{l}");
        } else {
            assert_eq!(
                (s["status"].as_str(), s["stage"].as_str()),
                (Some("rejected"), Some("quality")),
                "{l}"
            );
        }
    }
    Ok(())
}
