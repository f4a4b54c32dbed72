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

/// Whether the user is in the experiment's exposed share (`exposure`): a second, independent
/// bucket, so ramping exposure never changes which variant an exposed user has.
pub fn exposed(name: &str, exp: &Experiment, user_id: &str) -> bool {
    exp.exposure >= 1.0 || bucket(&exp.salt, &format!("{name}/exposure"), user_id) < exp.exposure
}

/// The user's variant: `None` outside the exposed share or when the experiment has no
/// variant with a positive weight.
pub fn assign<'a>(name: &str, exp: &'a Experiment, user_id: &str) -> Option<&'a Variant> {
    if !exposed(name, exp, user_id) {
        return None;
    }
    split(name, exp, user_id)
}

/// The variant by the variants' relative weights alone (exposure not asked).
fn split<'a>(name: &str, exp: &'a Experiment, user_id: &str) -> Option<&'a Variant> {
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

/// The user's variant in every experiment: experiment name → variant name (window not
/// asked: see [`variants_at`]).
pub fn variants(
    experiments: &BTreeMap<String, Experiment>,
    user_id: &str,
) -> BTreeMap<String, String> {
    experiments
        .iter()
        .filter_map(|(name, e)| assign(name, e, user_id).map(|v| (name.clone(), v.name.clone())))
        .collect()
}

/// The user's variant in every experiment whose window holds `ts`.
pub fn variants_at(
    experiments: &BTreeMap<String, Experiment>,
    user_id: &str,
    ts: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<String, String> {
    experiments
        .iter()
        .filter(|(_, e)| e.covers(ts))
        .filter_map(|(name, e)| assign(name, e, user_id).map(|v| (name.clone(), v.name.clone())))
        .collect()
}

/// Which configuration assigned a variant: 16 hex digits of a hash of the experiment
/// definitions that decide assignment (names, salts, variants and weights, exposure, windows;
/// not guardrails or scorers). Recorded with every variant FlashFit fills in.
pub fn config_hash(experiments: &BTreeMap<String, Experiment>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (name, e) in experiments {
        parts.push(name.clone());
        parts.push(e.salt.clone());
        parts.push(format!("{}", e.exposure));
        parts.push(e.start.clone().unwrap_or_default());
        parts.push(e.end.clone().unwrap_or_default());
        for v in &e.variants {
            parts.push(v.name.clone());
            parts.push(format!("{}", v.weight));
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!("{:016x}", hash(&refs))
}

/// What [`check_change`] found: errors (users would move between variants of a running
/// experiment) and warnings (allowed, but worth knowing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeCheck {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl ChangeCheck {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl std::fmt::Display for ChangeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if self.ok() {
            writeln!(
                f,
                "ok: no user moves between variants of a running experiment"
            )?;
        } else {
            writeln!(
                f,
                "refused: {} change(s) would move users between variants",
                self.errors.len()
            )?;
        }
        Ok(())
    }
}

/// Checks a new experiments config against the running one at `now` (the ramping rule of
/// [`Experiment`]): for every experiment that has started, salt, variants (names, order,
/// weights) and control must be unchanged and its start must stay; exposure may grow (shrinking
/// it is a warning: users leave, their later events are not attributed); experiments not yet
/// started may change freely; removing a running experiment is a warning (its readout stops).
pub fn check_change(
    running: &BTreeMap<String, Experiment>,
    new: &BTreeMap<String, Experiment>,
    now: chrono::DateTime<chrono::Utc>,
) -> ChangeCheck {
    let mut c = ChangeCheck::default();
    for (name, old) in running {
        let started = old.window().0.is_none_or(|s| s <= now);
        let Some(n) = new.get(name) else {
            if started {
                c.warnings
                    .push(format!("{name}: removed while running (its readout stops)"));
            }
            continue;
        };
        if !started {
            continue;
        }
        if n.salt != old.salt {
            c.errors.push(format!(
                "{name}: salt changed ({} → {}): every user is reassigned",
                old.salt, n.salt
            ));
        }
        let shape = |e: &Experiment| -> Vec<(String, f64)> {
            e.variants
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect()
        };
        if shape(n) != shape(old) {
            c.errors.push(format!(
                "{name}: variants or weights changed ({:?} → {:?}): users would move between \
                 variants; ramp with `exposure` instead",
                shape(old),
                shape(n)
            ));
        }
        if n.control_name() != old.control_name() {
            c.errors.push(format!(
                "{name}: control changed ({:?} → {:?})",
                old.control_name(),
                n.control_name()
            ));
        }
        if n.start != old.start {
            c.errors.push(format!(
                "{name}: start moved ({:?} → {:?}) after it started",
                old.start, n.start
            ));
        }
        if n.exposure < old.exposure {
            c.warnings.push(format!(
                "{name}: exposure shrinks {} → {}: some users leave the experiment",
                old.exposure, n.exposure
            ));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(salt: &str, weights: &[(&str, f64)]) -> Experiment {
        Experiment::weighted(salt, weights)
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

    #[test]
    fn ramping_exposure_adds_users_and_moves_nobody_between_variants() {
        let mut e = exp("s1", &[("control", 0.5), ("treatment", 0.5)]);
        e.exposure = 0.1;
        let users: Vec<String> = (0..20_000).map(|u| format!("user-{u}")).collect();
        let before: Vec<Option<String>> = users
            .iter()
            .map(|u| assign("ramp", &e, u).map(|v| v.name.clone()))
            .collect();
        let share = before.iter().filter(|v| v.is_some()).count() as f64 / users.len() as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
        let mut ramped = e.clone();
        ramped.exposure = 0.5;
        let now = chrono::Utc::now();
        let running = BTreeMap::from([("ramp".to_string(), e.clone())]);
        let next = BTreeMap::from([("ramp".to_string(), ramped.clone())]);
        assert!(check_change(&running, &next, now).ok());
        let mut joined = 0;
        for (u, was) in users.iter().zip(&before) {
            let now_in = assign("ramp", &ramped, u).map(|v| v.name.clone());
            match was {
                Some(v) => assert_eq!(now_in.as_ref(), Some(v), "{u} moved"),
                None => joined += usize::from(now_in.is_some()),
            }
        }
        assert!(joined > 7_000, "{joined} joined");
        // Re-weighting instead moves users: refused by the check, and really moving them.
        let reweighted = exp("s1", &[("control", 0.3), ("treatment", 0.7)]);
        let full = exp("s1", &[("control", 0.5), ("treatment", 0.5)]);
        let moved = users
            .iter()
            .filter(|u| {
                assign("ramp", &full, u).map(|v| &v.name)
                    != assign("ramp", &reweighted, u).map(|v| &v.name)
            })
            .count();
        assert!(moved > 3_000, "{moved}");
        let r = check_change(
            &BTreeMap::from([("ramp".to_string(), full.clone())]),
            &BTreeMap::from([("ramp".to_string(), reweighted.clone())]),
            now,
        );
        assert!(!r.ok() && r.errors[0].contains("weights changed"), "{r}");
        // Not started yet: anything goes.
        let mut later = full.clone();
        later.start = Some("2999-01-01T00:00:00Z".into());
        let r = check_change(
            &BTreeMap::from([("ramp".to_string(), later)]),
            &BTreeMap::from([("ramp".to_string(), reweighted)]),
            now,
        );
        assert!(r.ok(), "{r}");
        // Salt, control and start are frozen too; shrinking exposure warns.
        let mut salted = full.clone();
        salted.salt = "s2".into();
        salted.control = Some("treatment".into());
        salted.exposure = 0.5;
        let r = check_change(
            &BTreeMap::from([("ramp".to_string(), full.clone())]),
            &BTreeMap::from([("ramp".to_string(), salted)]),
            now,
        );
        assert_eq!(r.errors.len(), 2, "{r}");
        assert_eq!(r.warnings.len(), 1, "{r}");
    }

    #[test]
    fn the_window_decides_attribution_and_the_hash_names_the_config() {
        let mut e = exp("s1", &[("a", 1.0), ("b", 1.0)]);
        e.start = Some("2026-12-01T00:00:00Z".into());
        e.end = Some("2026-12-08T00:00:00Z".into());
        let all = BTreeMap::from([("x".to_string(), e.clone())]);
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&chrono::Utc)
        };
        assert!(variants_at(&all, "u1", t("2026-11-30T23:59:59Z")).is_empty());
        assert_eq!(variants_at(&all, "u1", t("2026-12-01T00:00:00Z")).len(), 1);
        assert!(variants_at(&all, "u1", t("2026-12-08T00:00:00Z")).is_empty());
        let h = config_hash(&all);
        assert_eq!(h.len(), 16);
        assert_eq!(h, config_hash(&all.clone()));
        let mut ramped = e.clone();
        ramped.exposure = 0.5;
        assert_ne!(h, config_hash(&BTreeMap::from([("x".to_string(), ramped)])));
        let mut guarded = e;
        guarded.guardrails = vec!["mean_session_duration_s >= -5%".into()];
        assert_eq!(
            h,
            config_hash(&BTreeMap::from([("x".to_string(), guarded)]))
        );
    }
}
