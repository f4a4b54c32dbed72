//! The readout over a real (in-memory) `kpi_events` table: attribution windows, the verdicts
//! on a planted effect, SRM, the HTML page and the `ab_results` rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use flashfit_config::Experiment;
use flashfit_sinks::layout::KPI_EVENTS;
use flashfit_sinks::table::{Range, Table};
use object_store::memory::InMemory;
use object_store::path::Path;
use serde_json::{Value, json};

use super::*;
use crate::metrics::Metric;
use crate::report::Verdict;

fn experiment(weights: &[(&str, f64)]) -> Experiment {
    Experiment {
        start: Some("2026-11-01T00:00:00Z".into()),
        end: Some("2026-12-01T00:00:00Z".into()),
        guardrails: vec!["mean_session_duration_s >= -5%".into()],
        ..Experiment::weighted("s", weights)
    }
}

/// Users of `exp` with per-variant CTRs; every user has 10 impressions, one session and a
/// return visit on the next day; the planted variant's users click more.
fn events(
    exp: &str,
    variant_of: impl Fn(usize) -> &'static str,
    ctr: impl Fn(&str) -> f64,
    users: usize,
) -> Vec<Value> {
    let mut rng = flashfit_stats::Rng::new(42);
    let mut out = Vec::new();
    for u in 0..users {
        let v = variant_of(u);
        let user = format!("user-{u}");
        let mut ev = |kind: &str, ts: &str, extra: Value| {
            let id = format!("{exp}-{u}-{}", out.len());
            let mut e = json!({"event_id": id, "user_id": user, "type": kind, "ts": ts,
                "variants": {exp: v}});
            if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            out.push(e);
        };
        for _ in 0..10 {
            ev("impression", "2026-11-10T10:00:00Z", json!({}));
            if rng.bernoulli(ctr(v)) {
                ev("click", "2026-11-10T10:00:05Z", json!({}));
            }
        }
        ev(
            "session_end",
            "2026-11-10T10:05:00Z",
            json!({"duration_s": 60.0 + rng.normal() * 10.0}),
        );
        ev("impression", "2026-11-11T09:00:00Z", json!({}));
        // Outside the window: never counted.
        ev("click", "2026-12-02T09:00:00Z", json!({}));
        ev("click", "2026-12-02T09:00:01Z", json!({}));
    }
    out
}

async fn table(events: &[Value]) -> Table {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let t = Table::new(store, Path::from("wh/kpi_events"), KPI_EVENTS);
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            flashfit_sinks::kpi_events::row(&serde_json::to_vec(e).expect("json")).expect("row")
        })
        .collect();
    let range = Range {
        topic: "flashfit.kpi".into(),
        partition: 0,
        first: 0,
        last: rows.len() as i64 - 1,
    };
    t.write_range(&range, &rows).await.expect("write");
    t
}

#[tokio::test]
async fn a_planted_ctr_effect_is_a_significant_win_and_a_skewed_split_trips_srm() {
    let exps = BTreeMap::from([
        (
            "ranking".to_string(),
            experiment(&[("control", 1.0), ("treatment", 1.0)]),
        ),
        (
            "skewed".to_string(),
            experiment(&[("control", 1.0), ("treatment", 1.0)]),
        ),
    ]);
    let mut all = events(
        "ranking",
        |u| if u % 2 == 0 { "control" } else { "treatment" },
        |v| if v == "treatment" { 0.15 } else { 0.10 },
        2000,
    );
    // 60/40 against 50/50 weights, same CTR in both.
    all.extend(events(
        "skewed",
        |u| if u % 5 < 3 { "control" } else { "treatment" },
        |_| 0.10,
        2000,
    ));
    let t = table(&all).await;
    let limits = flashfit_sinks::sql::Limits::default();
    let r = readout(&t, &exps, "ranking", None, None, &limits)
        .await
        .expect("readout");
    assert!(!r.srm.mismatch, "{r}");
    assert_eq!(r.variants[0].users, 1000);
    let ctr = r.comparison("treatment", Metric::Ctr).expect("ctr");
    assert_eq!(ctr.verdict, Verdict::SignificantWin, "{r}");
    // Impressions: 11 per user; clicks outside the window are not counted.
    let control_ctr = r.variants[0].metrics[&Metric::Ctr].1.value;
    assert!((control_ctr - 0.10 * 10.0 / 11.0).abs() < 0.01, "{r}");
    assert!(
        ctr.rel_lift.ci_low > 0.0 && ctr.rel_lift.ci_low < 0.5,
        "{r}"
    );
    // Same session and return behaviour in both: not a win, guardrail judged.
    let s = r
        .comparison("treatment", Metric::MeanSessionDurationS)
        .expect("session");
    assert_ne!(s.verdict, Verdict::SignificantWin, "{r}");
    assert_eq!(s.guardrails.len(), 1);
    let ret = r.variants[0].metrics[&Metric::ReturnRate7d].1.value;
    assert!(
        (ret - 1.0).abs() < 1e-9,
        "every user came back the next day: {r}"
    );
    let text = r.to_string();
    assert!(text.contains("SIGNIFICANT WIN"), "{text}");
    assert!(!text.contains("SAMPLE RATIO MISMATCH"), "{text}");

    let skewed = readout(&t, &exps, "skewed", None, None, &limits)
        .await
        .expect("readout");
    assert!(skewed.srm.mismatch, "{skewed}");
    assert!(skewed.to_string().contains("SAMPLE RATIO MISMATCH"));
    // The metrics are still computed (the readout says it is not to be trusted).
    let aa = skewed.comparison("treatment", Metric::Ctr).expect("ctr");
    assert_ne!(aa.verdict, Verdict::NotEnoughData, "{skewed}");

    // A narrower --from: the first day's events only come from before it.
    let from = chrono::DateTime::parse_from_rfc3339("2026-11-11T00:00:00Z")
        .expect("t")
        .with_timezone(&chrono::Utc);
    let later = readout(&t, &exps, "ranking", Some(from), None, &limits)
        .await
        .expect("readout");
    assert_eq!(later.from.as_deref(), Some("2026-11-11T00:00:00Z"));
    assert_eq!(later.variants[0].metrics[&Metric::Ctr].1.value, 0.0);

    // The page is self-contained: one SVG per metric, no scripts or external files.
    let page = html::page(&r).expect("html");
    assert_eq!(page.matches("<svg").count(), Metric::ALL.len());
    assert!(!page.contains("<script") && !page.contains("src=\"http"));
    assert!(page.contains("significant win"));
    // ab_results: a row per variant and metric, lifts on the treatment's rows only.
    let rows = results::rows(&r);
    assert_eq!(rows.len(), 2 * Metric::ALL.len());
    let batch = flashfit_sinks::layout::decode(results::schema(), &rows).expect("decode");
    assert_eq!(batch.num_rows(), rows.len());
    let store = InMemory::new();
    let path = results::write(&store, &Path::from("wh/ab_results"), &r)
        .await
        .expect("write");
    assert!(path.as_ref().starts_with("wh/ab_results/ranking/"));
    // A second readout the same day replaces the file.
    let again = results::write(&store, &Path::from("wh/ab_results"), &r)
        .await
        .expect("write");
    assert_eq!(path, again);
}
