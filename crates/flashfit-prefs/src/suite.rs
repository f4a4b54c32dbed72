//! The store's conformance suite, run against SQLite by this crate's tests and against
//! PostgreSQL by the end-to-end suite (`tests/`): the same assertions on both backends.

use flashfit_outfits::Item;
use flashfit_schema::{FeedbackEvent, Signal};

use crate::{Applied, Store};

fn garment(id: &str, category: &str, color: &str, tags: &[&str]) -> Item {
    Item {
        garment_id: id.into(),
        category: category.into(),
        color_primary: Some(color.into()),
        style_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Item::default()
    }
}

fn event(id: &str, user: &str, signal: Signal, garments: &[&Item]) -> FeedbackEvent {
    FeedbackEvent {
        event_id: id.into(),
        user_id: user.into(),
        signal,
        garment_ids: garments.iter().map(|g| g.garment_id.clone()).collect(),
        outfit_id: None,
        ts: chrono::Utc::now(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Runs every check; `prefix` keeps runs on a shared database apart. Panics on a failure.
pub async fn conformance(store: &Store, prefix: &str) {
    let user = format!("{prefix}-u1");
    let jeans = garment("g1", "jeans", "blue", &["classic", "casual"]);
    let sneakers = garment("g2", "sneakers", "white", &["casual"]);
    let e = |id: &str| format!("{prefix}-{id}");

    // like (+1.0 × 0.1) on both garments; "casual" is on both, so it moves twice.
    let like = event(&e("f1"), &user, Signal::Like, &[&jeans, &sneakers]);
    let applied = store
        .apply(&like, &[jeans.clone(), sneakers.clone()])
        .await
        .expect("apply");
    assert_eq!(applied, Applied::New { garments: 2 });
    let p = store.preferences(&user).await.expect("prefs");
    assert_eq!(p.feedback_count, 1);
    assert!(
        close(p.category["jeans"], 0.1) && close(p.category["sneakers"], 0.1),
        "{p:?}"
    );
    assert!(
        close(p.color["blue"], 0.1) && close(p.color["white"], 0.1),
        "{p:?}"
    );
    assert!(
        close(p.style["classic"], 0.1) && close(p.style["casual"], 0.2),
        "{p:?}"
    );

    // The same event again (a redelivery): nothing changes.
    let again = store
        .apply(&like, &[jeans.clone(), sneakers.clone()])
        .await
        .expect("again");
    assert_eq!(again, Applied::Duplicate);
    assert_eq!(store.preferences(&user).await.expect("prefs"), p);

    // wear +2.0, skip −0.3, dislike −1.0, click +0.2 on the jeans: 0.1 + 0.2 − 0.03 − 0.1 + 0.02.
    for (id, s) in [
        ("f2", Signal::Wear),
        ("f3", Signal::Skip),
        ("f4", Signal::Dislike),
        ("f5", Signal::Click),
    ] {
        let ev = event(&e(id), &user, s, &[&jeans]);
        store
            .apply(&ev, std::slice::from_ref(&jeans))
            .await
            .expect("apply");
    }
    let p = store.preferences(&user).await.expect("prefs");
    assert_eq!(p.feedback_count, 5);
    assert!(close(p.category["jeans"], 0.19), "{p:?}");
    assert!(close(p.category["sneakers"], 0.1), "{p:?}");
    assert!(close(p.style["casual"], 0.29), "{p:?}");

    // An event whose garments were not found still counts, and moves no weight.
    let lost = event(&e("f6"), &user, Signal::Like, &[&jeans]);
    assert_eq!(
        store.apply(&lost, &[]).await.expect("apply"),
        Applied::New { garments: 0 }
    );
    let q = store.preferences(&user).await.expect("prefs");
    assert_eq!(
        (q.feedback_count, q.category.clone()),
        (6, p.category.clone())
    );

    // Users are separate; an unknown user has no preferences.
    let other = format!("{prefix}-u2");
    assert_eq!(
        store
            .preferences(&other)
            .await
            .expect("prefs")
            .feedback_count,
        0
    );

    // The same new event delivered to many workers at once is applied exactly once.
    let racing = event(&e("f7"), &other, Signal::Wear, &[&jeans]);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, ev, g) = (store.clone(), racing.clone(), jeans.clone());
            tokio::spawn(async move { s.apply(&ev, &[g]).await })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(Applied::New { .. }) => new += 1,
            Ok(Applied::Duplicate) => {}
            // SQLite may report a busy database to a writer; the worker retries those.
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(new, 1);
    let p = store.preferences(&other).await.expect("prefs");
    assert_eq!(p.feedback_count, 1);
    assert!(close(p.category["jeans"], 0.2), "{p:?}");

    // Migrations are idempotent.
    store.migrate().await.expect("migrate again");
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_on_sqlite() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("prefs.db").display());
        let store = crate::Store::connect(&url).await.expect("connect");
        super::conformance(&store, "sqlite").await;
        // A second process's connection sees the same state and migrates nothing.
        let again = crate::Store::connect(&url).await.expect("reconnect");
        assert_eq!(
            again
                .preferences("sqlite-u1")
                .await
                .expect("prefs")
                .feedback_count,
            6
        );
    }

    #[tokio::test]
    async fn bad_urls_are_config_errors() {
        let e = crate::Store::connect("mysql://x").await.expect_err("mysql");
        assert!(!e.is_retryable(), "{e}");
    }
}
