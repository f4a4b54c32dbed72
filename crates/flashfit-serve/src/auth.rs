//! Who is calling `flashfit serve`: bearer tokens (JWT) checked against the identity
//! provider's keys, then whether that caller may touch the user named in the path.
//!
//! - Keys: a JSON Web Key Set (`[auth] jwks_uri`, a file or an HTTPS URL) with RS256 and
//!   ES256 keys picked by the token's `kid`, reloaded every `jwks_refresh_s` and, at most every
//!   10 s, when a token names a `kid` the set does not hold (the provider rotated its keys);
//!   or a shared HS256 secret (`hs256_secret`), for local development.
//! - A token must carry a valid signature by one of those keys, the configured `iss` and
//!   `aud`, an `exp` in the future and no `nbf` in the future (both with `leeway_s`). A token
//!   with `alg: none`, another algorithm, or an HS256 token when no secret is configured is
//!   refused: the algorithm is the key's, never the token's choice.
//! - The caller is `user_claim` (default `sub`); an `operator_scope` in `scope`/`scp` or
//!   `roles` makes it an operator, who may read any user's routes (support).
//!
//! Refusals are 401 (no token, or a token that is not valid: the reason says which of
//! missing / expired / not yet valid / invalid, nothing about keys or claims) and 403 (a
//! valid token for another user).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use flashfit_config::AuthConfig;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Least time between two reloads of the key set caused by an unknown `kid`.
const UNKNOWN_KID_RELOAD: Duration = Duration::from_secs(10);

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The `user_claim` of the token.
    pub subject: String,
    /// Scopes (`scope`, `scp`) and roles (`roles`) of the token.
    pub scopes: Vec<String>,
    pub operator: bool,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether this caller may use `{user_id}`'s routes.
    pub fn may_act_for(&self, user_id: &str) -> bool {
        self.operator || self.subject == user_id
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    Expired,
    NotYetValid,
    /// Bad signature, unknown key, wrong issuer or audience, unsupported algorithm,
    /// malformed: the client learns no more than that.
    Invalid,
    /// A valid token that may not use this route.
    Forbidden,
}

impl Refusal {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "a bearer token is required",
            Refusal::Expired => "the token has expired",
            Refusal::NotYetValid => "the token is not valid yet",
            Refusal::Invalid => "the token is not valid",
            Refusal::Forbidden => "this token may not use this user's routes",
        }
    }

    /// The `error` of the `WWW-Authenticate` challenge (RFC 6750), `None` for 403.
    pub fn challenge(self) -> Option<&'static str> {
        match self {
            Refusal::Missing => Some("Bearer realm=\"flashfit\""),
            Refusal::Expired | Refusal::NotYetValid | Refusal::Invalid => {
                Some("Bearer realm=\"flashfit\", error=\"invalid_token\"")
            }
            Refusal::Forbidden => None,
        }
    }

    /// The label of `flashfit_http_auth_refusals_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Invalid => "invalid",
            Refusal::Forbidden => "forbidden",
        }
    }
}

/// Why the authenticator could not start (or reload its keys).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("[auth] jwks_uri {uri}: {message}")]
    Jwks { uri: String, message: String },
    #[error("[auth] {0}")]
    Config(String),
}

/// Verification keys by `kid`.
type Keys = HashMap<String, (Algorithm, DecodingKey)>;

struct Inner {
    config: AuthConfig,
    hs256: Option<DecodingKey>,
    keys: RwLock<Keys>,
    /// When an unknown `kid` last caused a reload.
    last_kid_reload: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

/// Checks bearer tokens; [`Authenticator::disabled`] lets everyone through.
#[derive(Clone)]
pub struct Authenticator {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Authenticator(disabled)"),
            Some(i) => write!(
                f,
                "Authenticator(jwks: {:?}, hs256: {}, keys: {})",
                i.config.jwks_uri,
                i.hs256.is_some(),
                i.keys.read().map(|k| k.len()).unwrap_or(0)
            ),
        }
    }
}

impl Authenticator {
    /// No authentication (every caller is anonymous and may do anything).
    pub fn disabled() -> Self {
        Authenticator { inner: None }
    }

    /// From `[auth]`: disabled when neither a key set nor a secret is configured; else the key
    /// set is loaded now (serve does not start on keys it cannot read).
    pub async fn new(config: &AuthConfig) -> Result<Self, AuthError> {
        if !config.enabled() {
            return Ok(Self::disabled());
        }
        let hs256 = match &config.hs256_secret {
            Some(s) if s.expose().len() < 32 => {
                return Err(AuthError::Config(
                    "hs256_secret must be at least 32 bytes".into(),
                ));
            }
            Some(s) => Some(
                DecodingKey::from_secret(s.expose().as_bytes())
                    .map_err(|e| AuthError::Config(format!("hs256_secret: {e}")))?,
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AuthError::Config(format!("http client: {e}")))?;
        let inner = Arc::new(Inner {
            config: config.clone(),
            hs256,
            keys: RwLock::new(Keys::new()),
            last_kid_reload: Mutex::new(None),
            http,
        });
        let auth = Authenticator { inner: Some(inner) };
        auth.reload().await?;
        Ok(auth)
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Reloads the key set every `jwks_refresh_s` until `stop` (keeping the keys it has when
    /// a reload fails). Nothing to do without a key set.
    pub fn spawn_refresh(&self, stop: tokio_util::sync::CancellationToken) {
        let Some(inner) = &self.inner else { return };
        if inner.config.jwks_uri.is_none() {
            return;
        }
        let every = Duration::from_secs(inner.config.jwks_refresh_s.max(1));
        let auth = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                if let Err(e) = auth.reload().await {
                    tracing::warn!(error = %e, "reloading the key set failed; keeping the keys held");
                }
            }
        });
    }

    /// Loads the key set now (no-op without one).
    pub async fn reload(&self) -> Result<(), AuthError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let Some(uri) = &inner.config.jwks_uri else {
            return Ok(());
        };
        let keys = fetch_keys(&inner.http, uri).await?;
        tracing::info!(keys = keys.len(), uri, "key set loaded");
        if let Ok(mut held) = inner.keys.write() {
            *held = keys;
        }
        Ok(())
    }

    /// The caller an `Authorization` header value proves, `Ok(None)` when authentication is
    /// disabled.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Option<Caller>, Refusal> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid)?;
        let (alg, key) = match header.alg {
            Algorithm::HS256 => (
                Algorithm::HS256,
                inner.hs256.clone().ok_or(Refusal::Invalid)?,
            ),
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header.kid.as_deref().ok_or(Refusal::Invalid)?;
                let found = self.key(kid);
                let (alg, key) = match found {
                    Some(k) => k,
                    None => {
                        self.reload_for_unknown_kid().await;
                        self.key(kid).ok_or(Refusal::Invalid)?
                    }
                };
                if alg != header.alg {
                    return Err(Refusal::Invalid);
                }
                (alg, key)
            }
            _ => return Err(Refusal::Invalid),
        };
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = inner.config.leeway_s;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[inner.config.issuer.as_str()]);
        v.set_audience(&[inner.config.audience.as_str()]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refusal::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                _ => Refusal::Invalid,
            })?;
        let claims = data.claims;
        let subject = claims
            .get(&inner.config.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Refusal::Invalid)?
            .to_owned();
        let scopes = scopes_of(&claims);
        let operator = scopes.iter().any(|s| *s == inner.config.operator_scope);
        Ok(Some(Caller {
            subject,
            scopes,
            operator,
        }))
    }

    /// The scope `/metrics` needs, when one is configured.
    pub fn metrics_scope(&self) -> Option<&str> {
        self.inner
            .as_ref()
            .and_then(|i| i.config.metrics_scope.as_deref())
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        let inner = self.inner.as_ref()?;
        inner.keys.read().ok()?.get(kid).cloned()
    }

    /// A reload because a token named an unknown `kid`, unless one ran within the last 10 s
    /// (a flood of made-up `kid`s does not become a flood of fetches).
    async fn reload_for_unknown_kid(&self) {
        let Some(inner) = &self.inner else { return };
        if inner.config.jwks_uri.is_none() {
            return;
        }
        let due = inner
            .last_kid_reload
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= UNKNOWN_KID_RELOAD);
                if due {
                    *last = Some(Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if due && let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "reloading the key set for an unknown kid failed");
        }
    }
}

/// `scope` (space-separated), `scp` (string or list) and `roles` (list) of a token.
fn scopes_of(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scope", "scp", "roles"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    out
}

/// Reads the key set at `uri`: `file:///…`, `https://…`, or `http://` on a loopback host.
async fn fetch_keys(http: &reqwest::Client, uri: &str) -> Result<Keys, AuthError> {
    let err = |message: String| AuthError::Jwks {
        uri: uri.to_owned(),
        message,
    };
    let url = url::Url::parse(uri).map_err(|e| err(e.to_string()))?;
    let text = match url.scheme() {
        "file" => {
            let path = url
                .to_file_path()
                .map_err(|()| err("not a local path".into()))?;
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| err(e.to_string()))?
        }
        "https" => get(http, url).await.map_err(err)?,
        "http" if is_loopback(&url) => get(http, url).await.map_err(err)?,
        "http" => return Err(err("plain http only on a loopback host; use https".into())),
        other => return Err(err(format!("unsupported scheme {other}"))),
    };
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut keys = Keys::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!(uri, "a key without a kid is ignored");
            continue;
        };
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(kid, uri, "a key that is not RS256 or ES256 is ignored");
                continue;
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(k) => {
                keys.insert(kid, (alg, k));
            }
            Err(e) => tracing::warn!(kid, uri, error = %e, "an unreadable key is ignored"),
        }
    }
    if keys.is_empty() {
        return Err(err("no RS256 or ES256 key with a kid".into()));
    }
    Ok(keys)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

async fn get(http: &reqwest::Client, url: url::Url) -> Result<String, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    resp.text().await.map_err(|e| e.to_string())
}

/// A development token signed with `[auth] hs256_secret`: `sub` = `user`, the configured
/// issuer and audience, valid for `ttl`; with `operator`, the operator scope.
pub fn mint_dev_token(
    config: &AuthConfig,
    user: &str,
    operator: bool,
    ttl: Duration,
) -> Result<String, AuthError> {
    let secret = config.hs256_secret.as_ref().ok_or_else(|| {
        AuthError::Config("hs256_secret is not set: tokens are minted only for development".into())
    })?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        config.user_claim.as_str(): user,
        "iss": config.issuer,
        "aud": config.audience,
        "iat": now,
        "exp": now + ttl.as_secs() as i64,
    });
    if operator {
        claims["scope"] = config.operator_scope.clone().into();
    }
    let key = jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes())
        .map_err(|e| AuthError::Config(e.to_string()))?;
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| AuthError::Config(e.to_string()))
}

pub mod testing;

#[cfg(test)]
mod tests;
