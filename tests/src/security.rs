//! The security suite, over real `flashfit serve` processes: who may call which route (bearer
//! tokens checked against a key set file, an HS256 development secret), and serve refusing to
//! start exposed without authentication.

use std::time::Duration;

use flashfit_serve::auth::testing::{TestKey, claims, write_jwks};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::*;

/// `flashfit serve` on a free loopback port seeing `stack`, with `env`: the child and its
/// address once `/health` answers.
async fn serve(stack: &Stack, env: &[(&str, String)]) -> anyhow::Result<(Child, String)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = std::env::temp_dir().join(format!("flashfit-sec-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(flashfit_bin())
        .arg("serve")
        .envs(stack.child_env())
        .env("FLASHFIT_HTTP_ADDR", &addr)
        .env("FLASHFIT_LANCEDB_URI", format!("file://{}", dir.display()))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..150 {
        if http_get(&addr, "/health")
            .await
            .is_ok_and(|(c, _)| c == 200)
        {
            return Ok((child, addr));
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("serve exited {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("serve did not start on {addr}")
}

async fn get(addr: &str, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http_get_with(addr, path, &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_reads_which_wardrobe() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    let (key, rotated) = (TestKey::es256("k-1"), TestKey::rs256("k-2"));
    write_jwks(&jwks, &[&key]);
    let env = [
        (
            "FLASHFIT_AUTH__JWKS_URI",
            format!("file://{}", jwks.display()),
        ),
        ("FLASHFIT_AUTH__ISSUER", "https://id.example".to_owned()),
        (
            "FLASHFIT_AUTH__METRICS_SCOPE",
            "flashfit:metrics".to_owned(),
        ),
    ];
    let (mut child, addr) = serve(&stack, &env).await?;
    let alice = key.sign(&claims("alice", 300));
    let route = |user: &str| format!("/v1/users/{user}/variants");

    // No token, a forged one, an expired one, an unsigned one: 401 with a challenge.
    let (code, head, body) = get(&addr, &route("alice"), None).await?;
    assert_eq!(code, 401, "{body}");
    assert!(
        head.to_lowercase().contains("www-authenticate: bearer"),
        "{head}"
    );
    let forged = TestKey::es256("k-1").sign(&claims("alice", 300));
    let expired = key.sign(&claims("alice", -120));
    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none"}"#),
            b64.encode(claims("alice", 300).to_string())
        )
    };
    for (what, t) in [
        ("forged", &forged),
        ("expired", &expired),
        ("alg none", &none),
    ] {
        let (code, head, body) = get(&addr, &route("alice"), Some(t)).await?;
        assert_eq!(code, 401, "{what}: {body}");
        assert!(head.contains("invalid_token"), "{what}: {head}");
        // The reason says what class of problem, nothing about keys or claims.
        let v: serde_json::Value = serde_json::from_str(&body)?;
        assert!(!v["error"].as_str().unwrap_or("").contains("k-1"), "{body}");
    }
    // Alice on her routes: 200; on Bob's: 403.
    assert_eq!(get(&addr, &route("alice"), Some(&alice)).await?.0, 200);
    let search = "/v1/users/bob/search?text=shirt";
    let (code, _, body) = get(&addr, search, Some(&alice)).await?;
    assert_eq!(code, 403, "{body}");
    assert_eq!(get(&addr, &route("bob"), Some(&alice)).await?.0, 403);
    // An operator may read Bob's routes (support).
    let mut op = claims("support-1", 300);
    op["scope"] = json!("flashfit:operator");
    assert_eq!(
        get(&addr, &route("bob"), Some(&key.sign(&op))).await?.0,
        200
    );
    // The provider rotates its key: a token with the new kid works without a restart.
    write_jwks(&jwks, &[&key, &rotated]);
    let bob = rotated.sign(&claims("bob", 300));
    assert_eq!(get(&addr, &route("bob"), Some(&bob)).await?.0, 200);
    // /health stays open; /metrics needs its scope.
    assert_eq!(get(&addr, "/health", None).await?.0, 200);
    assert_eq!(get(&addr, "/metrics", None).await?.0, 401);
    assert_eq!(get(&addr, "/metrics", Some(&alice)).await?.0, 403);
    let mut m = claims("prometheus", 300);
    m["scope"] = json!("flashfit:metrics");
    let (code, _, metrics) = get(&addr, "/metrics", Some(&key.sign(&m))).await?;
    assert_eq!(code, 200);
    for reason in ["missing", "invalid", "expired", "forbidden"] {
        assert!(
            metrics.contains(&format!(
                "flashfit_http_auth_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted"
        );
    }
    child.start_kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_secret_mints_tokens_with_flashfit_token() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let secret = (
        "FLASHFIT_AUTH__HS256_SECRET",
        "s".repeat(16) + &"e".repeat(16),
    );
    let (mut child, addr) = serve(&stack, std::slice::from_ref(&secret)).await?;
    let out = Command::new(flashfit_bin())
        .args(["token", "--user", "u1", "--ttl", "60"])
        .env(secret.0, &secret.1)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    assert_eq!(
        get(&addr, "/v1/users/u1/variants", Some(&token)).await?.0,
        200
    );
    assert_eq!(
        get(&addr, "/v1/users/u2/variants", Some(&token)).await?.0,
        403
    );
    child.start_kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_exposed_without_authentication() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let addr = format!("0.0.0.0:{}", free_port());
    let out = Command::new(flashfit_bin())
        .arg("serve")
        .envs(stack.child_env())
        .env("FLASHFIT_HTTP_ADDR", &addr)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await??;
    assert!(!out.status.success(), "serve started on {addr}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
    // With the explicit flag it starts, and says so loudly.
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(flashfit_bin())
        .arg("serve")
        .envs(stack.child_env())
        .env("FLASHFIT_HTTP_ADDR", &addr)
        .env(
            "FLASHFIT_LANCEDB_URI",
            format!("file://{}", dir.path().display()),
        )
        .env("FLASHFIT_AUTH__ALLOW_UNAUTHENTICATED", "true")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let local = addr.replace("0.0.0.0", "127.0.0.1");
    let mut up = false;
    for _ in 0..150 {
        if http_get(&local, "/health")
            .await
            .is_ok_and(|(c, _)| c == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.start_kill()?;
    let out = child.wait_with_output().await?;
    assert!(up, "serve with allow_unauthenticated did not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WITHOUT AUTHENTICATION"), "{stderr}");
    Ok(())
}
