//! `flashfit bench rollups`: `compact` (garments_current) and `kpi-daily` out of core on
//! generated tables of a given size, printing time and peak RSS for each. The tables are
//! written straight as Parquet files (no range markers: the rollups read data files only)
//! from a template batch built by the real row functions, with the key columns replaced.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use flashfit_sinks::layout::{GARMENT_DELETES, GARMENTS, KPI_EVENTS, parquet_of};
use flashfit_sinks::sql::Limits;
use flashfit_sinks::table::Table;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct RollupsBench {
    /// Rows of the `garments` log (about 80% distinct garments: the rest are reprocessings).
    pub garments: usize,
    /// KPI events (1% of them a second copy of an earlier event id).
    pub events: usize,
    /// The DataFusion memory limit.
    pub memory_mb: usize,
    /// Where the tables go (default: a temporary directory, removed afterwards).
    pub dir: Option<std::path::PathBuf>,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

/// This process's peak resident set size (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    crate::peak_rss_mib(std::process::id())
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5); false where not allowed.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `template`'s rows repeated to `n` rows, with `columns` replaced.
fn expand(template: &RecordBatch, n: usize, columns: &[(&str, ArrayRef)]) -> Result<RecordBatch> {
    let idx = UInt32Array::from_iter_values((0..n).map(|i| (i % template.num_rows()) as u32));
    let schema = template.schema();
    let cols = schema
        .fields()
        .iter()
        .enumerate()
        .map(
            |(k, f)| match columns.iter().find(|(name, _)| name == f.name()) {
                Some((_, c)) => arrow::compute::cast(c, f.data_type()).map_err(invalid),
                None => {
                    arrow::compute::take(template.column(k).as_ref(), &idx, None).map_err(invalid)
                }
            },
        )
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema, cols).map_err(invalid)
}

fn strings(n: usize, f: impl Fn(usize) -> String) -> ArrayRef {
    Arc::new(StringArray::from_iter_values((0..n).map(f)))
}

fn times(n: usize, f: impl Fn(usize) -> i64) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values((0..n).map(f)).with_timezone("+00:00"))
}

async fn put(table: &Table, name: &str, batch: &RecordBatch) -> Result<()> {
    let bytes = parquet_of(batch).map_err(invalid)?;
    table
        .store
        .put(
            &table.root.clone().join("dt=2026-11-22").join(name),
            bytes.into(),
        )
        .await
        .map_err(invalid)?;
    Ok(())
}

/// 2026-11-01T00:00:00Z in microseconds.
const T0: i64 = 1_761_955_200_000_000;

async fn generate_garments(table: &Table, deletes: &Table, n: usize) -> Result<usize> {
    let rows = (0..1000)
        .map(|i| {
            let v = crate::synthetic_embedded(i);
            flashfit_sinks::garments::row(&serde_json::to_vec(&v).unwrap_or_default())
        })
        .collect::<flashfit_sinks::Result<Vec<_>>>()
        .map_err(invalid)?;
    let template = GARMENTS.batch(&rows).map_err(invalid)?;
    let distinct = (n * 4 / 5).max(1);
    let chunk = 50_000;
    let mut files = 0;
    for start in (0..n).step_by(chunk) {
        let k = chunk.min(n - start);
        let b = expand(
            &template,
            k,
            &[
                ("event_id", strings(k, |i| format!("e-{:09}", start + i))),
                (
                    "garment_id",
                    strings(k, |i| format!("g-{:09}", (start + i) % distinct)),
                ),
                (
                    "user_id",
                    strings(k, |i| format!("u-{:06}", ((start + i) % distinct) % 20_000)),
                ),
                (
                    "processed_at",
                    times(k, |i| T0 + (start + i) as i64 * 1_000_000),
                ),
            ],
        )?;
        put(table, &format!("part-bench-{files:05}.parquet"), &b).await?;
        files += 1;
    }
    // The owners delete 1% of the garments.
    let tombstones: Vec<serde_json::Value> = (0..distinct)
        .step_by(100)
        .map(|g| {
            serde_json::json!({"event_id": format!("d-{g}"), "user_id": format!("u-{:06}", g % 20_000),
                "garment_id": format!("g-{g:09}"), "deleted_at": "2026-11-30T00:00:00Z"})
        })
        .collect();
    for (i, part) in tombstones.chunks(50_000).enumerate() {
        let rows = part
            .iter()
            .map(|v| {
                GARMENT_DELETES.convert(&flashfit_runtime::Message {
                    value: Some(serde_json::to_vec(v).unwrap_or_default().into()),
                    ..Default::default()
                })
            })
            .collect::<flashfit_sinks::Result<Vec<_>>>()
            .map_err(invalid)?;
        put(
            deletes,
            &format!("part-bench-{i:05}.parquet"),
            &GARMENT_DELETES.batch(&rows).map_err(invalid)?,
        )
        .await?;
    }
    Ok(files)
}

async fn generate_events(table: &Table, n: usize) -> Result<usize> {
    let kinds = [
        "impression",
        "impression",
        "impression",
        "click",
        "save",
        "session_end",
        "rating",
        "conversion",
    ];
    let rows = (0..1000)
        .map(|i| {
            let ranking = ["a", "b", "c"][i % 3];
            let v = serde_json::json!({
                "event_id": format!("t-{i}"), "user_id": "u", "type": kinds[i % kinds.len()],
                "ts": "2026-11-22T10:00:00Z",
                "variants": {"outfit_scorer": if i % 2 == 0 { "control" } else { "colour_first" },
                             "ranking": ranking},
                "duration_s": 42.0 + i as f64, "value": (i % 5) as f64 + 1.0,
            });
            flashfit_sinks::kpi_events::row(&serde_json::to_vec(&v).unwrap_or_default())
        })
        .collect::<flashfit_sinks::Result<Vec<_>>>()
        .map_err(invalid)?;
    let template = KPI_EVENTS.batch(&rows).map_err(invalid)?;
    let chunk = 100_000;
    let mut files = 0;
    for start in (0..n).step_by(chunk) {
        let k = chunk.min(n - start);
        // Every 100th event repeats the id of the one before (a client's retry).
        let id = |i: usize| {
            let j = start + i;
            format!("k-{:010}", if j % 100 == 99 { j - 1 } else { j })
        };
        let b = expand(
            &template,
            k,
            &[
                ("event_id", strings(k, id)),
                (
                    "user_id",
                    strings(k, |i| format!("u-{:06}", (start + i) % 100_000)),
                ),
                (
                    "ts",
                    times(k, |i| T0 + ((start + i) as i64 % (30 * 86_400)) * 1_000_000),
                ),
            ],
        )?;
        put(table, &format!("part-bench-{files:05}.parquet"), &b).await?;
        files += 1;
    }
    Ok(files)
}

pub async fn rollups(o: &RollupsBench) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = o.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(invalid)?);
    let table = |name: &str, layout| Table::new(store.clone(), Path::from("wh").join(name), layout);
    let (garments, deletes, events) = (
        table("garments", GARMENTS),
        table("garment_deletes", GARMENT_DELETES),
        table("kpi_events", KPI_EVENTS),
    );
    let limits = Limits {
        memory_bytes: o.memory_mb * 1024 * 1024,
        ..Limits::default()
    };
    let limits = Limits {
        spill_dir: Some(dir.join("spill")),
        ..limits
    };
    std::fs::create_dir_all(dir.join("spill"))?;
    let t = Instant::now();
    let gfiles = generate_garments(&garments, &deletes, o.garments).await?;
    let efiles = generate_events(&events, o.events).await?;
    println!(
        "generated {} garment rows ({gfiles} files) and {} KPI events ({efiles} files) in {:.1} s under {}",
        o.garments,
        o.events,
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    let resets = reset_peak();
    let before = peak_rss_mib().unwrap_or(0.0);
    let t = Instant::now();
    let c = flashfit_sinks::compact::compact_current_with(
        &garments,
        &deletes,
        &Path::from("wh/garments_current"),
        &limits,
    )
    .await
    .map_err(invalid)?;
    println!(
        "compact: {} rows in {} files -> {} current rows ({} deleted garments left out) in {:.1} s; peak RSS {:.0} MiB (DataFusion limit {} MiB; {:.0} MiB before)",
        c.rows_read,
        c.files_read,
        c.rows_written,
        c.deleted,
        t.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(0.0),
        o.memory_mb,
        before,
    );
    reset_peak();
    let before = peak_rss_mib().unwrap_or(0.0);
    let t = Instant::now();
    let r = flashfit_sinks::kpi::rollup_daily_with(&events, &Path::from("wh/kpi_daily"), &limits)
        .await
        .map_err(invalid)?;
    println!(
        "kpi-daily: {} events ({} duplicate ids counted once) -> {} rows in {:.1} s; peak RSS {:.0} MiB (DataFusion limit {} MiB; {:.0} MiB before)",
        r.events,
        r.duplicates,
        r.rows,
        t.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(0.0),
        o.memory_mb,
        before,
    );
    if !resets {
        println!(
            "note: the peak RSS could not be reset between phases; figures include generation"
        );
    }
    Ok(())
}
