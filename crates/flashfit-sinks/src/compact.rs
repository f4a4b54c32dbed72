//! `flashfit compact`: the `garments_current` table — one row per garment, the latest
//! processing wins, deleted garments (any tombstone in `garment_deletes`) left out — rebuilt
//! from the `garments` log, out of core (DataFusion for the winners, then one streamed pass).
//! The same log always gives the same bytes; the file is uploaded in parts and appears in one
//! step (atomic on S3 and on a local directory), so readers see the old or the new view,
//! never half of one.

use std::collections::HashMap;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::layout::ParquetUpload;
use crate::sql::{self, Limits};
use crate::table::Table;
use crate::{Error, Result};

/// What a compaction read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub files_read: usize,
    pub rows_read: usize,
    pub rows_written: usize,
    /// Garments left out because their owner deleted them.
    pub deleted: usize,
    /// Rows left out because their user does not own the garment id.
    pub not_owner: usize,
    pub path: String,
}

/// Every row of a table, as batches of its schema.
pub async fn read_log(table: &Table) -> Result<(usize, Vec<RecordBatch>)> {
    let files = crate::sql::data_files(table).await?;
    let mut batches = Vec::new();
    for f in &files {
        let bytes: Bytes = table.store.get(f).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for b in reader {
            batches.push(b.map_err(|e| Error::Parquet(e.to_string()))?);
        }
    }
    Ok((files.len(), batches))
}

/// Rebuilds `<out>/garments_current.parquet` from `table`, leaving out the garments
/// `deletes` has tombstones for. A garment belongs to the user whose upload of it was processed
/// first: rows of the same garment id from any other user (an upload naming someone else's
/// garment) are left out, and only the owner's delete counts. Out of core, with
/// [`Limits::default`].
pub async fn compact_current(table: &Table, deletes: &Table, out: &Path) -> Result<Compacted> {
    compact_current_with(table, deletes, out, &Limits::default()).await
}

/// The winning row of one garment, from the first pass.
struct Winner {
    owner: String,
    event: u64,
    at: i64,
    deleted: bool,
    written: bool,
}

fn event_hash(event_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    event_id.hash(&mut h);
    h.finish()
}

/// Text columns of `b`, as UTF-8 arrays whatever string type DataFusion produced.
fn utf8_columns<const N: usize>(
    b: &RecordBatch,
    names: [&str; N],
) -> Result<[arrow::array::ArrayRef; N]> {
    let mut out = Vec::with_capacity(N);
    for name in names {
        let c = b
            .column_by_name(name)
            .ok_or_else(|| Error::Parquet(format!("no column `{name}`")))?;
        out.push(
            arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)
                .map_err(|e| Error::Parquet(e.to_string()))?,
        );
    }
    out.try_into()
        .map_err(|_| Error::Parquet("column count".into()))
}

fn processed_at(b: &RecordBatch) -> Result<&arrow::array::TimestampMicrosecondArray> {
    Ok(b.column_by_name("processed_at")
        .ok_or_else(|| Error::Parquet("no processed_at".into()))?
        .as_primitive::<TimestampMicrosecondType>())
}

/// [`compact_current`] within `limits`, in two passes. First DataFusion computes each
/// garment's winner from the key columns ([`sql::WINNERS`]: window functions over a sort that
/// spills past the memory limit); then the log is streamed again one file at a time and each
/// winning row goes to the output, uploaded in parts and switched in at the end in one step.
/// Rows keep the log's order (files by path), so the same log gives the same bytes.
pub async fn compact_current_with(
    table: &Table,
    deletes: &Table,
    out: &Path,
    limits: &Limits,
) -> Result<Compacted> {
    let ctx = sql::session(limits)?;
    sql::register(&ctx, "garments", table).await?;
    sql::register(&ctx, "garment_deletes", deletes).await?;
    let mut winners: HashMap<String, Winner> = HashMap::new();
    sql::for_each_batch(&ctx, sql::WINNERS, async |b| {
        let [g, o, e] = utf8_columns(&b, ["garment_id", "owner", "event_id"])?;
        let [g, o, e] = [&g, &o, &e].map(|c| c.as_string::<i32>());
        let at = processed_at(&b)?;
        let deleted = b
            .column_by_name("deleted")
            .ok_or_else(|| Error::Parquet("no deleted".into()))?
            .as_boolean();
        for i in 0..b.num_rows() {
            winners.insert(
                g.value(i).to_owned(),
                Winner {
                    owner: o.value(i).to_owned(),
                    event: event_hash(e.value(i)),
                    at: at.value(i),
                    deleted: deleted.value(i),
                    written: false,
                },
            );
        }
        Ok(())
    })
    .await?;
    drop(ctx);

    let files = sql::data_files(table).await?;
    let path = out.clone().join("garments_current.parquet");
    let mut upload = ParquetUpload::start(&*table.store, &path, (table.layout.schema)()).await?;
    let mut counts = (0usize, 0usize);
    let streamed = stream_winners(table, &files, &mut winners, &mut upload, &mut counts).await;
    if let Err(e) = streamed {
        upload.abort().await;
        return Err(e);
    }
    let rows_written = upload.finish().await?;
    Ok(Compacted {
        files_read: files.len(),
        rows_read: counts.0,
        rows_written,
        deleted: winners.values().filter(|w| w.deleted).count(),
        not_owner: counts.1,
        path: path.to_string(),
    })
}

/// The second pass: each file's winning rows into the upload; counts (rows read, rows of a
/// user who does not own the garment).
async fn stream_winners(
    table: &Table,
    files: &[Path],
    winners: &mut HashMap<String, Winner>,
    upload: &mut ParquetUpload,
    counts: &mut (usize, usize),
) -> Result<()> {
    for f in files {
        let bytes: Bytes = table.store.get(f).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for b in reader {
            let b = b.map_err(|e| Error::Parquet(format!("{f}: {e}")))?;
            let [g, u, e] = utf8_columns(&b, ["garment_id", "user_id", "event_id"])?;
            let [g, u, e] = [&g, &u, &e].map(|c| c.as_string::<i32>());
            let at = processed_at(&b)?;
            let mut keep = Vec::with_capacity(b.num_rows());
            for i in 0..b.num_rows() {
                counts.0 += 1;
                let w = winners.get_mut(g.value(i));
                let k = match w {
                    Some(w) if w.owner != u.value(i) => {
                        counts.1 += 1;
                        false
                    }
                    Some(w) if !w.deleted && !w.written => {
                        let wins = w.at == at.value(i) && w.event == event_hash(e.value(i));
                        w.written |= wins;
                        wins
                    }
                    _ => false,
                };
                keep.push(k);
            }
            let kept = arrow::compute::filter_record_batch(&b, &BooleanArray::from(keep))
                .map_err(|e| Error::Parquet(e.to_string()))?;
            if kept.num_rows() > 0 {
                upload.write(&kept).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;
    use crate::garments;
    use crate::layout::{GARMENT_DELETES, GARMENTS};
    use crate::table::tests::{bytes, object, record};
    use crate::table::{Range, Table};

    #[tokio::test]
    async fn the_latest_processing_of_each_garment_wins_and_the_bytes_repeat() {
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
        let t = Table::new(store.clone(), Path::from("wh/garments"), GARMENTS);
        let deletes = Table::new(store, Path::from("wh/garment_deletes"), GARMENT_DELETES);
        let range = |first, last| Range {
            topic: "flashfit.embedded".into(),
            partition: 0,
            first,
            last,
        };
        let mut r1 = record("e1", "2026-11-20T10:00:00Z");
        r1["garment_id"] = "g1".into();
        let mut r2 = record("e2", "2026-11-20T11:00:00Z");
        r2["garment_id"] = "g2".into();
        // g1 reprocessed two days later (a new model version): the newer row wins.
        let mut r3 = record("e3", "2026-11-22T09:00:00Z");
        r3["garment_id"] = "g1".into();
        r3["classification"]["category"] = "sneakers".into();
        let rows = |rs: &[&Value]| {
            rs.iter()
                .map(|r| garments::row(&bytes(r)).expect("row"))
                .collect::<Vec<_>>()
        };
        t.write_range(&range(0, 1), &rows(&[&r1, &r2]))
            .await
            .expect("write");
        t.write_range(&range(2, 2), &rows(&[&r3]))
            .await
            .expect("write");
        let out = Path::from("wh/garments_current");
        let c = compact_current(&t, &deletes, &out).await.expect("compact");
        assert_eq!((c.files_read, c.rows_read, c.rows_written), (2, 3, 2));
        assert_eq!(c.deleted, 0);
        let bytes = object(&t, c.path.as_str()).await;
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .expect("r")
            .build()
            .expect("b")
            .next()
            .expect("batch")
            .expect("ok");
        let ids = b.column(0).as_string::<i32>();
        let cats = b
            .column(b.schema().index_of("category").expect("col"))
            .as_string::<i32>();
        // In the log's order: g2's only row (first file), then g1's reprocessing.
        assert_eq!(ids.value(0), "e2");
        assert_eq!((ids.value(1), cats.value(1)), ("e3", "sneakers"));
        // Again: the same bytes.
        compact_current(&t, &deletes, &out).await.expect("again");
        let again = object(&t, c.path.as_str()).await;
        assert_eq!(bytes, again);

        // The owner deletes g1: it leaves the current view, even though its rows stay in the
        // log and one of them is newer than the delete.
        crate::table::tests::tombstone(&deletes, "u1", "g1", 0).await;
        let c = compact_current(&t, &deletes, &out).await.expect("compact");
        assert_eq!((c.rows_read, c.rows_written, c.deleted), (3, 1, 1));
    }

    use serde_json::Value;
}
