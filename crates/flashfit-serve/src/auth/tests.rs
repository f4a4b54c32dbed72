use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use flashfit_config::{AuthConfig, Secret};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::testing::{TestKey, claims, write_jwks};
use super::*;

fn config(jwks: &Path) -> AuthConfig {
    AuthConfig {
        jwks_uri: Some(
            url::Url::from_file_path(jwks)
                .expect("file url")
                .to_string(),
        ),
        issuer: "https://id.example".into(),
        ..AuthConfig::default()
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn tokens_signed_by_a_key_of_the_set_name_their_caller() {
    let dir = tempfile::tempdir().expect("tmp");
    let jwks = dir.path().join("jwks.json");
    let (es, rs) = (TestKey::es256("ec-1"), TestKey::rs256("rsa-1"));
    write_jwks(&jwks, &[&es, &rs]);
    let auth = Authenticator::new(&config(&jwks)).await.expect("auth");
    for key in [&es, &rs] {
        let caller = auth
            .verify(Some(&bearer(&key.sign(&claims("u1", 300)))))
            .await
            .expect("valid")
            .expect("enabled");
        assert_eq!(caller.subject, "u1");
        assert!(!caller.operator);
        assert!(caller.may_act_for("u1") && !caller.may_act_for("u2"));
    }
    // The operator scope, as an OAuth scope string or as a role.
    let mut c = claims("support-7", 300);
    c["scope"] = "openid flashfit:operator".into();
    let op = auth.verify(Some(&bearer(&es.sign(&c)))).await.expect("ok");
    assert!(op.is_some_and(|o| o.operator && o.may_act_for("u2")));
    let mut c = claims("support-8", 300);
    c["roles"] = json!(["flashfit:operator"]);
    let op = auth.verify(Some(&bearer(&rs.sign(&c)))).await.expect("ok");
    assert!(op.is_some_and(|o| o.operator));
}

#[tokio::test]
async fn forged_expired_early_foreign_and_unsigned_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let jwks = dir.path().join("jwks.json");
    let es = TestKey::es256("ec-1");
    write_jwks(&jwks, &[&es]);
    let auth = Authenticator::new(&config(&jwks)).await.expect("auth");
    let refused = async |header: Option<String>| auth.verify(header.as_deref()).await.err();
    assert_eq!(refused(None).await, Some(Refusal::Missing));
    assert_eq!(
        refused(Some("Basic dTE6cHc=".into())).await,
        Some(Refusal::Missing)
    );
    assert_eq!(
        refused(Some(bearer(&es.sign(&claims("u1", -120))))).await,
        Some(Refusal::Expired)
    );
    let mut early = claims("u1", 600);
    early["nbf"] = (chrono::Utc::now().timestamp() + 300).into();
    assert_eq!(
        refused(Some(bearer(&es.sign(&early)))).await,
        Some(Refusal::NotYetValid)
    );
    for (field, value) in [
        ("iss", json!("https://evil.example")),
        ("aud", json!("another-api")),
    ] {
        let mut c = claims("u1", 300);
        c[field] = value;
        assert_eq!(
            refused(Some(bearer(&es.sign(&c)))).await,
            Some(Refusal::Invalid),
            "{field}"
        );
    }
    let mut no_aud = claims("u1", 300);
    no_aud.as_object_mut().expect("obj").remove("aud");
    assert_eq!(
        refused(Some(bearer(&es.sign(&no_aud)))).await,
        Some(Refusal::Invalid)
    );
    // Signed by a key the provider never published, under a kid it did publish.
    let forger = TestKey::es256("ec-1");
    assert_eq!(
        refused(Some(bearer(&forger.sign(&claims("u1", 300))))).await,
        Some(Refusal::Invalid)
    );
    // A valid signature with one byte of the payload changed.
    let good = es.sign(&claims("u1", 300));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&B64.decode(&parts[1]).expect("b64")).expect("json");
    payload["sub"] = "u2".into();
    parts[1] = B64.encode(payload.to_string());
    assert_eq!(
        refused(Some(bearer(&parts.join(".")))).await,
        Some(Refusal::Invalid)
    );
    // alg none, and HS256 when no secret is configured (the public key is no HMAC secret).
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims("u1", 300).to_string())
    );
    assert_eq!(refused(Some(bearer(&none))).await, Some(Refusal::Invalid));
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("u1", 300),
        &EncodingKey::from_secret(es.jwk.to_string().as_bytes()).expect("key"),
    )
    .expect("sign");
    assert_eq!(refused(Some(bearer(&hs))).await, Some(Refusal::Invalid));
    assert_eq!(
        refused(Some(bearer("not.a.token"))).await,
        Some(Refusal::Invalid)
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_when_a_token_names_its_kid() {
    let dir = tempfile::tempdir().expect("tmp");
    let jwks = dir.path().join("jwks.json");
    let (old, new) = (TestKey::es256("2026-11"), TestKey::rs256("2026-12"));
    write_jwks(&jwks, &[&old]);
    let auth = Authenticator::new(&config(&jwks)).await.expect("auth");
    let token = new.sign(&claims("u1", 300));
    // The provider publishes the new key and signs with it: the unknown kid reloads the set.
    write_jwks(&jwks, &[&old, &new]);
    let caller = auth.verify(Some(&bearer(&token))).await.expect("rotated");
    assert_eq!(caller.map(|c| c.subject).as_deref(), Some("u1"));
    // A made-up kid reloads at most every 10 s, then is refused.
    let stranger = TestKey::es256("made-up");
    assert_eq!(
        auth.verify(Some(&bearer(&stranger.sign(&claims("u1", 300)))))
            .await
            .err(),
        Some(Refusal::Invalid)
    );
    // A token whose header claims another algorithm than its key's is refused.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("2026-12".into());
    let confused = jsonwebtoken::encode(&h, &claims("u1", 300), &old.encoding).expect("sign");
    assert_eq!(
        auth.verify(Some(&bearer(&confused))).await.err(),
        Some(Refusal::Invalid)
    );
}

#[tokio::test]
async fn a_development_secret_mints_and_checks_hs256_tokens() {
    let config = AuthConfig {
        hs256_secret: Some(Secret::new("a-development-secret-of-32-bytes!")),
        ..AuthConfig::default()
    };
    let auth = Authenticator::new(&config).await.expect("auth");
    let token = mint_dev_token(&config, "u1", false, Duration::from_secs(60)).expect("mint");
    let caller = auth.verify(Some(&bearer(&token))).await.expect("valid");
    assert_eq!(caller.map(|c| c.subject).as_deref(), Some("u1"));
    let op = mint_dev_token(&config, "ops", true, Duration::from_secs(60)).expect("mint");
    assert!(
        auth.verify(Some(&bearer(&op)))
            .await
            .expect("valid")
            .is_some_and(|c| c.operator)
    );
    let other = AuthConfig {
        hs256_secret: Some(Secret::new("another-development-secret-32-b!")),
        ..AuthConfig::default()
    };
    let forged = mint_dev_token(&other, "u1", true, Duration::from_secs(60)).expect("mint");
    assert_eq!(
        auth.verify(Some(&bearer(&forged))).await.err(),
        Some(Refusal::Invalid)
    );
    // A short secret is refused at start; no keys, no authentication.
    let short = AuthConfig {
        hs256_secret: Some(Secret::new("short")),
        ..AuthConfig::default()
    };
    assert!(Authenticator::new(&short).await.is_err());
    let off = Authenticator::new(&AuthConfig::default())
        .await
        .expect("off");
    assert!(!off.enabled());
    assert_eq!(off.verify(None).await, Ok(None));
}

#[tokio::test]
async fn a_key_set_that_cannot_be_read_stops_the_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("absent.json");
    assert!(Authenticator::new(&config(&missing)).await.is_err());
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).expect("write");
    assert!(Authenticator::new(&config(&empty)).await.is_err());
    let plain = AuthConfig {
        jwks_uri: Some("http://id.example/jwks.json".into()),
        ..AuthConfig::default()
    };
    let err = Authenticator::new(&plain).await.expect_err("plain http");
    assert!(err.to_string().contains("https"), "{err}");
}
