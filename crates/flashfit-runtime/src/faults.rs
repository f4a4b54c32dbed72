//! Fault points for the fault suite: a failure injected at a named point of a real worker
//! process, for inputs no real data can produce (today every photo is resized and every
//! caption truncated before inference, so no upload makes a model fail on its own).
//!
//! `FLASHFIT_FAULTS=point=key[,point=key…]` arms `point` for `key`; the code at the point asks
//! [`armed`] and fails as the real failure would. Unset (production), [`armed`] is one
//! lookup in an empty list. Points: `infer` (key: an upload's `event_id`) makes a model
//! stage's batched inference fail for any batch holding that upload.

use std::sync::OnceLock;

/// The variable the fault points are read from (once, at first use).
pub const FAULTS_ENV: &str = "FLASHFIT_FAULTS";

fn parse(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect()
}

fn points() -> &'static [(String, String)] {
    static POINTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let p = std::env::var(FAULTS_ENV)
            .map(|s| parse(&s))
            .unwrap_or_default();
        if !p.is_empty() {
            tracing::warn!(faults = ?p, "fault points armed ({FAULTS_ENV}): for tests only");
        }
        p
    })
}

/// True when `point` is armed for `key`.
pub fn armed(point: &str, key: &str) -> bool {
    points().iter().any(|(p, k)| p == point && k == key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn points_parse_from_a_comma_list() {
        assert_eq!(
            super::parse("infer=e-1, infer = e-2,junk,=x,y="),
            vec![
                ("infer".to_owned(), "e-1".to_owned()),
                ("infer".to_owned(), "e-2".to_owned())
            ]
        );
    }
}
