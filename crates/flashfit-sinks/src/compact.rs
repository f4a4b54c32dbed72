//! `flashfit compact`: the `garments_current` table — one row per garment, the latest
//! processing wins, deleted garments (any tombstone in `garment_deletes`) left out — rebuilt
//! from the `garments` log. Rows are sorted by user and garment, so
//! the same log always gives the same bytes; the file is replaced in one put (atomic on S3 and
//! on a local directory), so readers see the old or the new view, never half of one.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::TimestampMicrosecondType;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::layout::parquet_of;
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

/// The garment ids with a tombstone in the `garment_deletes` table.
pub async fn deleted_garments(deletes: &Table) -> Result<HashSet<(String, String)>> {
    let (_, batches) = read_log(deletes).await?;
    let mut out = HashSet::new();
    for b in batches {
        let (Some(g), Some(u)) = (b.column_by_name("garment_id"), b.column_by_name("user_id"))
        else {
            return Err(Error::Parquet(
                "garment_deletes has no garment_id or user_id".into(),
            ));
        };
        let (ids, users) = (g.as_string::<i32>(), u.as_string::<i32>());
        out.extend((0..ids.len()).map(|i| (ids.value(i).to_owned(), users.value(i).to_owned())));
    }
    Ok(out)
}

/// Rebuilds `<out>/garments_current.parquet` from `table`, leaving out the garments
/// `deletes` has tombstones for. A garment belongs to the user whose upload of it was processed
/// first: rows of the same garment id from any other user (an upload naming someone else's
/// garment) are left out, and only the owner's delete counts.
pub async fn compact_current(table: &Table, deletes: &Table, out: &Path) -> Result<Compacted> {
    let deleted = deleted_garments(deletes).await?;
    let (files_read, batches) = read_log(table).await?;
    let schema = (table.layout.schema)();
    let all = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| Error::Parquet(e.to_string()))?;
    let col = |name: &str| -> Result<&dyn Array> {
        let i = schema
            .index_of(name)
            .map_err(|e| Error::Parquet(e.to_string()))?;
        Ok(all.column(i).as_ref())
    };
    let garment = col("garment_id")?.as_string::<i32>();
    let user = col("user_id")?.as_string::<i32>();
    let event = col("event_id")?.as_string::<i32>();
    let at = col("processed_at")?.as_primitive::<TimestampMicrosecondType>();
    // The owner of each garment: the user of its first processing.
    let mut first: HashMap<&str, usize> = HashMap::new();
    for i in 0..all.num_rows() {
        let g = garment.value(i);
        let earlier = first
            .get(g)
            .is_none_or(|&j| (at.value(i), event.value(i)) < (at.value(j), event.value(j)));
        if earlier {
            first.insert(g, i);
        }
    }
    // Latest processing per garment; ties (same instant) go to the larger event id.
    let mut best: HashMap<&str, usize> = HashMap::new();
    let mut left_out: HashSet<&str> = HashSet::new();
    let mut not_owner = 0usize;
    for i in 0..all.num_rows() {
        let g = garment.value(i);
        let owner = first.get(g).map(|&j| user.value(j)).unwrap_or_default();
        if user.value(i) != owner {
            not_owner += 1;
            continue;
        }
        if deleted.contains(&(g.to_owned(), owner.to_owned())) {
            left_out.insert(g);
            continue;
        }
        let newer = best
            .get(g)
            .is_none_or(|&j| (at.value(i), event.value(i)) > (at.value(j), event.value(j)));
        if newer {
            best.insert(g, i);
        }
    }
    let mut rows: Vec<usize> = best.into_values().collect();
    rows.sort_by(|a, b| {
        (user.value(*a), garment.value(*a)).cmp(&(user.value(*b), garment.value(*b)))
    });
    let indices = UInt32Array::from(rows.iter().map(|&i| i as u32).collect::<Vec<_>>());
    let columns = all
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Parquet(e.to_string()))?;
    let current =
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Parquet(e.to_string()))?;
    let buf = parquet_of(&current)?;
    let path = out.clone().join("garments_current.parquet");
    table.store.put(&path, PutPayload::from(buf)).await?;
    Ok(Compacted {
        files_read,
        rows_read: all.num_rows(),
        rows_written: current.num_rows(),
        deleted: left_out.len(),
        not_owner,
        path: path.to_string(),
    })
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
        assert_eq!((ids.value(0), cats.value(0)), ("e3", "sneakers"));
        assert_eq!(ids.value(1), "e2");
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
