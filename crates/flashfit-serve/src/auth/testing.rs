//! A test identity provider: fresh ES256 and RS256 signing keys, their public JWKs, a key set
//! file and claims, for the tests of this crate and the end-to-end suite.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key of the test's identity provider and its public JWK.
#[allow(missing_debug_implementations)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    /// A fresh P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key");
        // The uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
        }
    }

    /// A fresh 2048-bit RSA key (RS256).
    pub fn rs256(kid: &str) -> Self {
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
        let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(pkcs1_of(pkcs8.as_ref())),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": B64.encode(&public.n), "e": B64.encode(&public.e)}),
        }
    }

    /// A token of `claims`, signed, with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }
}

/// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER 0,
/// AlgorithmIdentifier, OCTET STRING { RSAPrivateKey } }.
fn pkcs1_of(pkcs8: &[u8]) -> &[u8] {
    // (tag, content start, content end) of the DER element at `at`.
    let element = |at: usize| -> (u8, usize, usize) {
        let tag = pkcs8[at];
        let first = pkcs8[at + 1];
        if first < 0x80 {
            (tag, at + 2, at + 2 + usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            let len = pkcs8[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |l, b| (l << 8) | usize::from(*b));
            (tag, at + 2 + n, at + 2 + n + len)
        }
    };
    let (_, body, _) = element(0);
    let (_, _, version_end) = element(body);
    let (_, _, algorithm_end) = element(version_end);
    let (tag, start, end) = element(algorithm_end);
    assert_eq!(tag, 0x04, "an OCTET STRING");
    &pkcs8[start..end]
}

/// Writes the key set of `keys` to `path`.
pub fn write_jwks(path: &Path, keys: &[&TestKey]) {
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(path, set.to_string()).expect("write jwks");
}

/// `sub`, issuer `https://id.example`, audience `flashfit`, expiring in `ttl` seconds.
pub fn claims(sub: &str, ttl: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "iss": "https://id.example", "aud": "flashfit", "iat": now, "exp": now + ttl})
}
