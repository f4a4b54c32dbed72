//! Data engineers' tools (issue 14) end to end against the stack.

use std::time::Duration;

use flashfit_pipeline::dlq::{self, DlqFilter};
use rdkafka::Message as _;

use crate::support::*;

/// An upload whose photo is missing is dead-lettered `not_found` by the quality worker; `dlq
/// list` counts it with its headers; after the photo is put (the cause fixed) `dlq redrive`
/// republishes it to `flashfit.uploads` with a header naming the redrive, the quality worker
/// processes it, and the same redrive run again republishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_then_redriven_once_after_the_cause_is_fixed() -> anyhow::Result<()>
{
    let stack = Stack::new()?;
    stack.ensure_topics(&["quality"]).await?;
    let good = stack.put_upload("cat.jpg", photo("cat.jpg")).await?;
    let late = good.replace("cat.jpg", "late.jpg");
    stack
        .publish(&stack.producer()?, &[stale_upload_event("late", &late)])
        .await?;
    run_worker_until(&stack.config, "quality", 1).await?;

    let k = &stack.config.kafka;
    let quality = DlqFilter::new(Some("quality".into()), None, None)?;
    let l = dlq::list(k, &quality, 5).await?;
    assert_eq!(l.counts["quality"]["not_found"], 1, "{l:?}");
    let h = &l.last[0].headers;
    assert_eq!(h["flashfit.source.topic"], stack.topics.uploads(), "{l:?}");
    let other = DlqFilter::new(None, Some("too_small".into()), Some("2026-01-01T00:00:00Z"))?;
    assert!(dlq::list(k, &other, 5).await?.counts.is_empty());
    assert!(DlqFilter::new(None, None, Some("yesterday")).is_err());

    // A dry run counts and changes nothing.
    let dry = dlq::redrive(k, &quality, true).await?;
    assert_eq!((dry.read, dry.republished), (1, 1), "{dry:?}");

    stack.put_upload("late.jpg", photo("cat.jpg")).await?;
    let r = dlq::redrive(k, &quality, false).await?;
    assert_eq!((r.read, r.republished, r.skipped), (1, 1, 0), "{r:?}");
    assert_eq!(r.targets[&stack.topics.uploads()], 1, "{r:?}");
    let uploads = stack
        .tail(&stack.topics.uploads())?
        .collect_until(Duration::from_secs(30), |v| v.len() >= 2)
        .await;
    let redriven = uploads
        .iter()
        .find_map(|m| flashfit_pipeline::watch::header(m, dlq::REDRIVE_HEADER));
    assert!(
        redriven.is_some_and(|id| id.starts_with(&r.group)),
        "the republished upload names its redrive"
    );
    let tail = stack.tail(&stack.topics.quality())?;
    run_worker_until(&stack.config, "quality", 1).await?;
    let out = tail
        .collect_until(Duration::from_secs(30), |v| !v.is_empty())
        .await;
    let rec: flashfit_schema::GarmentRecord =
        serde_json::from_slice(out.first().and_then(|m| m.payload()).unwrap_or_default())?;
    assert_eq!(rec.upload.event_id, "late");

    // The redrive keeps its position: nothing to republish the second time, nor by a redrive
    // of that reason alone (the same group).
    let again = dlq::redrive(k, &quality, false).await?;
    assert_eq!((again.read, again.republished), (0, 0), "{again:?}");
    let not_found = DlqFilter::new(Some("quality".into()), Some("not_found".into()), None)?;
    let again = dlq::redrive(k, &not_found, false).await?;
    assert_eq!((again.read, again.republished), (0, 0), "{again:?}");
    Ok(())
}
