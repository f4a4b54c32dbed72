//! The security suite, over real `flashfit serve` processes: who may call which route (bearer
//! tokens checked against a key set file, an HS256 development secret), and serve refusing to
//! start exposed without authentication.

use std::time::Duration;

use futures::StreamExt as _;

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

/// One client (alice) floods serve while another (bob) makes ordinary requests: alice is
/// answered 429 with `Retry-After` once her bucket is empty, bob is served every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_client_is_429_while_another_client_is_served() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    let secret = "f".repeat(32);
    let env = [
        ("FLASHFIT_AUTH__HS256_SECRET", secret.clone()),
        ("FLASHFIT_HTTP__RATE_PER_S", "5".to_owned()),
        ("FLASHFIT_HTTP__RATE_BURST", "10".to_owned()),
    ];
    let (mut child, addr) = serve(&stack, &env).await?;
    let auth = flashfit_config::AuthConfig {
        hs256_secret: Some(flashfit_config::Secret::new(&secret)),
        ..Default::default()
    };
    let token = |user: &str| {
        flashfit_serve::auth::mint_dev_token(&auth, user, false, Duration::from_secs(300))
    };
    let (alice, bob) = (token("alice")?, token("bob")?);
    let flood = {
        let (addr, alice) = (addr.clone(), alice.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let replies: Vec<anyhow::Result<(u16, String, String)>> = futures::stream::iter(0..80)
                .map(|_| {
                    let (addr, alice) = (addr.clone(), alice.clone());
                    async move { get(&addr, "/v1/users/alice/variants", Some(&alice)).await }
                })
                .buffer_unordered(8)
                .collect()
                .await;
            (replies, started.elapsed())
        })
    };
    let mut bob_latencies = Vec::new();
    for _ in 0..8 {
        let t = std::time::Instant::now();
        let (code, _, body) = get(&addr, "/v1/users/bob/variants", Some(&bob)).await?;
        bob_latencies.push(t.elapsed());
        assert_eq!(code, 200, "bob is not held back by alice's flood: {body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (replies, took) = flood.await?;
    let mut ok = 0;
    let mut limited = 0;
    for r in replies {
        let (code, head, body) = r?;
        match code {
            200 => ok += 1,
            429 => {
                limited += 1;
                let retry = head
                    .lines()
                    .find_map(|l| {
                        l.to_lowercase()
                            .strip_prefix("retry-after:")
                            .map(|v| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "{head}");
                assert!(body.contains("too many requests"), "{body}");
            }
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    // The bucket: 10 at once, then 5 a second.
    let allowed = 10.0 + 5.0 * took.as_secs_f64() + 2.0;
    assert!(limited > 0, "80 requests in {took:?} and none limited");
    assert!(
        f64::from(ok) <= allowed,
        "{ok} served in {took:?} (at most {allowed:.0})"
    );
    let (_, metrics) = http_get(&addr, "/metrics").await?;
    assert!(
        metrics.contains(&format!("flashfit_http_rate_limited_total {limited}")),
        "{metrics}"
    );
    bob_latencies.sort();
    eprintln!(
        "security: alice's flood of 80 in {:.2} s: {ok} served, {limited} answered 429; bob 8/8 \
         served, median {:.1} ms, slowest {:.1} ms",
        took.as_secs_f64(),
        bob_latencies[4].as_secs_f64() * 1e3,
        bob_latencies[7].as_secs_f64() * 1e3
    );
    child.start_kill()?;
    Ok(())
}

/// Reads from `s` until the server closes it (or `limit` passes): how long that took.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), s.read(&mut buf)).await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A slowloris client (headers a byte at a time) and an idle one are closed once the header
/// timeout passes; past `max_connections` a connection is closed on accept; an ordinary
/// request is answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_excess_connections_are_closed() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::new()?;
    let env = [
        ("FLASHFIT_HTTP__HEADER_READ_TIMEOUT_MS", "1500".to_owned()),
        ("FLASHFIT_HTTP__MAX_CONNECTIONS", "4".to_owned()),
    ];
    let (mut child, addr) = serve(&stack, &env).await?;
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    let mut idle = tokio::net::TcpStream::connect(&addr).await?;
    let dripping = {
        let header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
        async move {
            for b in header.iter().chain(std::iter::repeat(&b'a')) {
                if slow.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            slow
        }
    };
    // Two slots taken (slow, idle): two more fit, the fifth is closed at once.
    let mut third = tokio::net::TcpStream::connect(&addr).await?;
    let _fourth = tokio::net::TcpStream::connect(&addr).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = tokio::net::TcpStream::connect(&addr).await?;
    let refused = closed_within(&mut fifth, Duration::from_secs(1)).await;
    assert!(refused.is_some(), "the fifth connection was not closed");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let (mut slow, idle_closed) =
        tokio::join!(dripping, closed_within(&mut idle, Duration::from_secs(6)));
    let slow_closed = closed_within(&mut slow, Duration::from_secs(1)).await;
    let slow_at = started.elapsed();
    assert!(
        idle_closed.is_some(),
        "an idle connection outlived the header timeout"
    );
    assert!(
        slow_closed.is_some() && slow_at < Duration::from_secs(6),
        "a slowloris connection lived {slow_at:?} with a 1.5 s header timeout"
    );
    let (code, _) = http_get(&addr, "/health").await?;
    assert_eq!(code, 200);
    let (_, metrics) = http_get(&addr, "/metrics").await?;
    let count = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("flashfit_http_connections_refused_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        count("flashfit_http_connections_closed_total{reason=\"header_timeout\"}") >= 2.0,
        "{metrics}"
    );
    eprintln!(
        "security: idle connection closed after {:.2} s, slowloris after {:.2} s (header timeout 1.5 s); the fifth of 4 connections closed in {:.0} ms",
        idle_closed.unwrap_or_default().as_secs_f64(),
        slow_at.as_secs_f64(),
        refused.unwrap_or_default().as_secs_f64() * 1e3
    );
    child.start_kill()?;
    Ok(())
}

/// User alice's upload naming bob's photo is refused `not_owner` by the quality worker (its
/// own process, on the real broker and S3 server), and dead-lettered with the reason; her own
/// photo, uploaded beside it, is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_naming_another_users_photo_is_rejected_not_owner() -> anyhow::Result<()> {
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let bytes = photo("cat.jpg");
    let mine = stack
        .put_upload_of("alice", "mine.jpg", bytes.clone())
        .await?;
    let theirs = stack.put_upload_of("bob", "theirs.jpg", bytes).await?;
    let as_alice = |id: &str, uri: &str| flashfit_schema::UploadEvent {
        user_id: "alice".into(),
        ..upload_event(id, uri)
    };
    let events = [as_alice("own", &mine), as_alice("stolen", &theirs)];
    let watcher = stack.status_watcher()?;
    stack.publish(&stack.producer()?, &events).await?;
    let mut worker = spawn(&stack, "quality", &[])?;
    let ids = events.iter().map(|e| e.event_id.clone()).collect();
    let seen = await_statuses(&watcher, &ids, Duration::from_secs(120)).await;
    let dlq = read_all(&stack, &stack.topics.dlq("quality"), Duration::from_secs(2)).await?;
    sigterm(&worker)?;
    worker.wait().await?;
    let seen = seen?;
    assert_eq!(seen["own"].status, flashfit_schema::Status::Processed);
    let stolen = &seen["stolen"];
    // Bad input, like a URI outside the uploads location: failed and dead-lettered.
    assert_eq!(stolen.status, flashfit_schema::Status::Failed, "{stolen:?}");
    assert_eq!(
        stolen.reasons,
        [flashfit_schema::Reason::NotOwner],
        "{stolen:?}"
    );
    let letter = dlq
        .iter()
        .find(|m| {
            flashfit_pipeline::watch::header(m, flashfit_schema::headers::ERROR_KIND).as_deref()
                == Some("not_owner")
        })
        .ok_or_else(|| anyhow::anyhow!("no not_owner dead letter among {}", dlq.len()))?;
    let message = flashfit_pipeline::watch::header(letter, flashfit_schema::headers::ERROR_MESSAGE)
        .unwrap_or_default();
    assert!(message.contains("alice"), "{message}");
    Ok(())
}

/// A private PostgreSQL (this machine's binaries) that accepts only TLS, with a certificate
/// made by [`postgres_over_tls_is_verified`]; stopped on drop.
struct TlsPostgres {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn as_postgres(program: &std::path::Path) -> std::process::Command {
        if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    fn run(cmd: &mut std::process::Command) -> anyhow::Result<()> {
        let out = cmd.output()?;
        anyhow::ensure!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A CA, a server certificate for `localhost` only (DNS name; no IP address) signed by
    /// it, and a second CA that signed nothing.
    fn certificates(dir: &std::path::Path) -> anyhow::Result<()> {
        let ssl = |args: &[&str]| {
            Self::run(
                std::process::Command::new("openssl")
                    .args(args)
                    .current_dir(dir),
            )
        };
        for ca in ["ca", "other-ca"] {
            ssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=flashfit test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ])?;
        }
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n")?;
        ssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ])
    }

    fn start() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .ok_or_else(|| {
                anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql (infra/up.sh installs it)")
            })?;
        let dir =
            std::env::temp_dir().join(format!("flashfit-pgtls-{}", uuid::Uuid::new_v4().simple()));
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs)?;
        Self::certificates(&certs)?;
        Self::run(
            std::process::Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&dir),
        )?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        if is_root() {
            Self::run(
                std::process::Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
            )?;
        }
        Self::run(
            std::process::Command::new("chmod")
                .arg("0600")
                .arg(certs.join("server.key")),
        )?;
        Self::run(
            Self::as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "flashfit", "--auth=trust"]),
        )?;
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            data.display(),
            certs.join("server.pem").display(),
            certs.join("server.key").display()
        );
        let mut pgconf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(&mut pgconf, conf.as_bytes())?;
        // TLS or nothing: no `host` (plaintext) line.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )?;
        let pg = TlsPostgres { dir, bin, port };
        Self::run(
            Self::as_postgres(&pg.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-w", "-l"])
                .arg(pg.dir.join("postgres.log"))
                .arg("start"),
        )?;
        Ok(pg)
    }

    fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://flashfit@{host}:{}/postgres?{params}", self.port)
    }

    fn ca(&self, name: &str) -> String {
        self.dir
            .join("certs")
            .join(format!("{name}.pem"))
            .display()
            .to_string()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Self::as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root (PostgreSQL then runs as the `postgres` user).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// The preference store over TLS (`sqlx` with rustls): `sslmode=verify-full` with the test's
/// CA connects and works; a CA that did not sign the server's certificate, or a host name the
/// certificate does not carry, is refused by the client; a plaintext client is refused by the
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified() -> anyhow::Result<()> {
    let pg = TlsPostgres::start()?;
    let connect = |url: String| async move {
        tokio::time::timeout(
            Duration::from_secs(60),
            flashfit_prefs::Store::connect(&url),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out: {url}"))
    };
    let good = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca("ca")),
    );
    let store = connect(good).await??;
    assert_eq!(store.preferences("nobody").await?.feedback_count, 0);
    let untrusted = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca("other-ca")),
    );
    let e = connect(untrusted)
        .await?
        .err()
        .ok_or_else(|| anyhow::anyhow!("an untrusted CA was accepted"))?;
    eprintln!("security: PostgreSQL, untrusted CA: {e}");
    let wrong_name = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca("ca")),
    );
    let e = connect(wrong_name)
        .await?
        .err()
        .ok_or_else(|| anyhow::anyhow!("a certificate for another name was accepted"))?;
    eprintln!("security: PostgreSQL, name not in the certificate: {e}");
    let plaintext = pg.url("127.0.0.1", "sslmode=disable");
    let e = connect(plaintext)
        .await?
        .err()
        .ok_or_else(|| anyhow::anyhow!("a plaintext client was served"))?;
    assert!(
        e.to_string().contains("no pg_hba.conf entry") || e.to_string().contains("SSL"),
        "{e}"
    );
    eprintln!("security: PostgreSQL, plaintext client: {e}");
    Ok(())
}

/// The SCRAM broker: nisshi (infra/up.sh builds it) on `port` with its SQL storage in `dir`.
fn scram_broker(dir: &std::path::Path, port: u16, extra: &[&str]) -> anyhow::Result<Child> {
    let bin = std::env::var("FLASHFIT_NISSHI")
        .unwrap_or_else(|_| "/var/lib/flashfit/stack/bin/nisshi".into());
    anyhow::ensure!(
        std::path::Path::new(&bin).exists(),
        "no SCRAM broker at {bin}: `bash infra/up.sh` builds nisshi (needs a nightly toolchain)"
    );
    let url = format!("tcp://127.0.0.1:{port}");
    Ok(Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://db/sasl.db"])
        .args(extra)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("broker-{port}.log")),
        )?)
        .kill_on_drop(true)
        .spawn()?)
}

async fn wait_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("nothing listens on {port}")
}

/// FlashFit's Kafka clients over SASL_SSL with SCRAM-SHA-512, against a broker on this
/// machine that enforces it (TLS with a certificate the test makes): `flashfit ingest` — its
/// admin client, producer and acknowledgements — succeeds with the right password, and is
/// refused with a wrong one, with an unknown user and as a plaintext client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "against nisshi 0.8.1 the admin client authenticates but the producer's first SCRAM exchange gets invalid-proof: not yet understood (see docs/security.md)"]
async fn kafka_clients_authenticate_with_scram_over_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("db"))?;
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki)?;
    let ssl = |args: &[&str]| {
        TlsPostgres::run(
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(&pki),
        )
    };
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=flashfit test kafka ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    std::fs::write(
        pki.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )?;
    ssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ])?;
    let port = free_port();
    // The user is created before the broker enforces authentication (nisshi's `user create`
    // speaks only to an open broker), then the broker restarts enforcing it, over TLS.
    let mut open = scram_broker(dir.path(), port, &[])?;
    wait_listening(port).await?;
    let nisshi = std::env::var("FLASHFIT_NISSHI")
        .unwrap_or_else(|_| "/var/lib/flashfit/stack/bin/nisshi".into());
    let created = Command::new(&nisshi)
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["upload-service", "s3cret-upload", "--mechanism", "scram512"])
        .current_dir(dir.path())
        .output()
        .await?;
    anyhow::ensure!(created.status.success(), "user create: {created:?}");
    open.kill().await?;
    open.wait().await?;
    let pem = |f: &str| pki.join(f).display().to_string();
    let mut broker = scram_broker(
        dir.path(),
        port,
        &[
            "--authentication",
            "--cert",
            &pem("server.pem"),
            "--key",
            &pem("server.key"),
        ],
    )?;
    wait_listening(port).await?;
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    std::fs::write(photos.join("cat.jpg"), photo("cat.jpg"))?;
    let uploads = dir.path().join("uploads");
    let ingest = |env: Vec<(&'static str, String)>| {
        let (photos, uploads) = (photos.clone(), uploads.clone());
        async move {
            let started = std::time::Instant::now();
            let out = Command::new(flashfit_bin())
                .args(["ingest"])
                .arg(&photos)
                .args(["--user", "alice"])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("FLASHFIT_KAFKA_BROKERS", format!("127.0.0.1:{port}"))
                .env(
                    "FLASHFIT_UPLOADS_URI",
                    format!("file://{}", uploads.display()),
                )
                .env("FLASHFIT_KAFKA__MESSAGE_TIMEOUT_MS", "15000")
                .env("FLASHFIT_KAFKA__SOCKET_TIMEOUT_MS", "10000")
                .envs(env)
                .output();
            let out = tokio::time::timeout(Duration::from_secs(120), out)
                .await
                .map_err(|_| anyhow::anyhow!("ingest did not finish"))??;
            Ok::<_, anyhow::Error>((
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
                started.elapsed(),
            ))
        }
    };
    let scram = |user: &str, password: &str| {
        vec![
            ("FLASHFIT_KAFKA__SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("FLASHFIT_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("FLASHFIT_KAFKA__SASL_USERNAME", user.to_owned()),
            ("FLASHFIT_KAFKA__SASL_PASSWORD", password.to_owned()),
            ("FLASHFIT_KAFKA__SSL_CA_LOCATION", pem("ca.pem")),
        ]
    };
    let (ok, log, took) = ingest(scram("upload-service", "s3cret-upload")).await?;
    assert!(ok, "the right password was refused: {log}");
    eprintln!(
        "security: SCRAM-SHA-512 over TLS, right password: published in {:.1} s",
        took.as_secs_f64()
    );
    for (case, env) in [
        ("wrong password", scram("upload-service", "guess")),
        ("unknown user", scram("mallory", "s3cret-upload")),
        ("plaintext", Vec::new()),
        (
            "TLS without SASL",
            vec![
                ("FLASHFIT_KAFKA__SECURITY_PROTOCOL", "SSL".to_owned()),
                ("FLASHFIT_KAFKA__SSL_CA_LOCATION", pem("ca.pem")),
            ],
        ),
    ] {
        let (ok, log, took) = ingest(env).await?;
        assert!(!ok, "{case}: the broker accepted it");
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .to_owned();
        eprintln!(
            "security: SCRAM broker, {case}: refused in {:.1} s: {last}",
            took.as_secs_f64()
        );
    }
    broker.kill().await?;
    Ok(())
}
