//! A/B assignment (seed: Phase 2 "A/B Testing Framework"). A user's variant in an experiment
//! is a pure function of the experiment's salt, its name and the user id: the same in every
//! process and after restarts. Each experiment hashes independently, so changing one
//! experiment's weights (or salt) reshuffles nobody in another.

use std::collections::BTreeMap;

use flashfit_config::{Experiment, Variant};

/// FNV-1a 64 of the bytes, then the splitmix64 finaliser (FNV alone spreads similar ids
/// poorly).
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f; // unit separator: ("ab","c") ≠ ("a","bc")
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The user's position in `[0, 1)` for this experiment.
pub fn bucket(salt: &str, experiment: &str, user_id: &str) -> f64 {
    (hash(&[salt, experiment, user_id]) >> 11) as f64 / (1u64 << 53) as f64
}

/// The user's variant, by the variants' relative weights; `None` when the experiment has no
/// variant with a positive weight.
pub fn assign<'a>(name: &str, exp: &'a Experiment, user_id: &str) -> Option<&'a Variant> {
    let total: f64 = exp.variants.iter().map(|v| v.weight.max(0.0)).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let target = bucket(&exp.salt, name, user_id) * total;
    let mut acc = 0.0;
    let mut last = None;
    for v in &exp.variants {
        if v.weight <= 0.0 {
            continue;
        }
        acc += v.weight;
        last = Some(v);
        if target < acc {
            return Some(v);
        }
    }
    last
}

/// The user's variant in every experiment: experiment name → variant name.
pub fn variants(
    experiments: &BTreeMap<String, Experiment>,
    user_id: &str,
) -> BTreeMap<String, String> {
    experiments
        .iter()
        .filter_map(|(name, e)| assign(name, e, user_id).map(|v| (name.clone(), v.name.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(salt: &str, weights: &[(&str, f64)]) -> Experiment {
        Experiment {
            salt: salt.into(),
            variants: weights
                .iter()
                .map(|(n, w)| Variant {
                    name: (*n).into(),
                    weight: *w,
                    scorer: None,
                    weights: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_split_is_within_one_percent_of_the_weights_over_100k_users() {
        let e = exp("s1", &[("control", 0.5), ("a", 0.3), ("b", 0.2)]);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let n = 100_000;
        for u in 0..n {
            let v = assign("outfit_scorer", &e, &format!("user-{u}")).expect("variant");
            *counts.entry(v.name.clone()).or_default() += 1;
        }
        for (name, want) in [("control", 0.5), ("a", 0.3), ("b", 0.2)] {
            let got = counts[name] as f64 / n as f64;
            assert!((got - want).abs() < 0.01, "{name}: {got} vs {want}");
        }
    }

    #[test]
    fn assignment_is_pure_and_experiments_are_independent() {
        let a = exp("s1", &[("control", 0.5), ("treatment", 0.5)]);
        let b = exp("s2", &[("x", 0.5), ("y", 0.5)]);
        let users: Vec<String> = (0..2000).map(|u| format!("u{u}")).collect();
        let before: Vec<_> = users
            .iter()
            .map(|u| assign("colours", &b, u).expect("v").name.clone())
            .collect();
        // Re-weighting experiment `a` moves users within `a` only.
        let a2 = exp("s1", &[("control", 0.9), ("treatment", 0.1)]);
        for (u, was) in users.iter().zip(&before) {
            assert_eq!(&assign("colours", &b, u).expect("v").name, was);
            let _ = assign("ranking", &a2, u);
        }
        // Same inputs, same answer; a user's buckets in two experiments are unrelated.
        let same = users
            .iter()
            .filter(|u| {
                assign("ranking", &a, u).expect("v").name == "control"
                    && assign("colours", &b, u).expect("v").name == "x"
            })
            .count();
        assert!(
            (400..600).contains(&same),
            "{same} of 2000 in both first halves"
        );
        assert_eq!(
            assign("ranking", &a, "u1").expect("v").name,
            assign("ranking", &a.clone(), "u1").expect("v").name
        );
        // Growing a variant from 0.5 to 0.9 only moves users into it.
        for u in &users {
            if assign("ranking", &a, u).expect("v").name == "control" {
                assert_eq!(assign("ranking", &a2, u).expect("v").name, "control");
            }
        }
        assert!(assign("x", &exp("s", &[("only", 0.0)]), "u").is_none());
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned: assignments must not change when the code is rebuilt or moved.
        assert_eq!(
            hash(&["salt", "exp", "user-1"]),
            hash(&["salt", "exp", "user-1"])
        );
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
        assert_eq!(hash(&[""]), 17_665_956_581_633_026_203);
        assert_eq!(
            assign(
                "outfit_scorer",
                &exp("s1", &[("a", 1.0), ("b", 1.0)]),
                "user-1"
            )
            .map(|v| v.name.as_str()),
            Some(if bucket("s1", "outfit_scorer", "user-1") < 0.5 {
                "a"
            } else {
                "b"
            })
        );
    }
}
