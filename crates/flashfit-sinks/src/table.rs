//! A Parquet table on object storage that a replayed topic cannot duplicate.
//!
//! The sink writes the records of one input partition in offset ranges. A range becomes one
//! Parquet file per `dt=` partition, named after the input topic, partition and offset range
//! (`<table>/dt=YYYY-MM-DD/part-<topic>-<partition>-<first>-<last>.parquet`), written
//! create-only, and then a range marker (`<table>/_ranges/<topic>/<partition>/<first>`, body
//! `<last>`), also create-only. Before it writes a range starting at offset `f`, the sink asks
//! for the marker of `f`: if it exists, that range is already in the table (a crash before the
//! commit, a retry, or a replay from the beginning), and the sink skips through its `last`
//! offset instead. Offsets are committed only after the marker is written, so committed offsets
//! are always range boundaries and a restart realigns with the files already there.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::{Error, Result};

/// What a table holds: its Arrow schema, how an input record becomes a row, and the
/// timestamp column whose UTC day is the `dt=` partition.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub name: &'static str,
    pub schema: fn() -> SchemaRef,
    pub row: fn(&Value) -> Result<Value>,
    pub time_column: &'static str,
}

/// The `garments` log (records of `flashfit.embedded`).
pub const GARMENTS: Layout = Layout {
    name: "garments",
    schema: crate::garments::schema,
    row: crate::garments::row,
    time_column: "processed_at",
};

/// The `garment_deletes` tombstones (events of `flashfit.deletes`).
pub const GARMENT_DELETES: Layout = Layout {
    name: "garment_deletes",
    schema: crate::deletes::schema,
    row: crate::deletes::row,
    time_column: "deleted_at",
};

/// A/B KPI events (events of `flashfit.kpi`).
pub const KPI_EVENTS: Layout = Layout {
    name: "kpi_events",
    schema: crate::kpi::schema,
    row: crate::kpi::row,
    time_column: "ts",
};

/// JSON rows as one Arrow batch of `schema` (no rows: an empty batch).
pub fn decode(schema: SchemaRef, rows: &[Value]) -> Result<RecordBatch> {
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(|e| Error::BadRecord(e.to_string()))?;
    decoder
        .serialize(rows)
        .map_err(|e| Error::BadRecord(e.to_string()))?;
    Ok(decoder
        .flush()
        .map_err(|e| Error::BadRecord(e.to_string()))?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// One batch as Parquet bytes, written with [`writer_properties`].
pub fn parquet_of(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(writer_properties()))?;
    w.write(batch)?;
    w.close()?;
    Ok(out)
}

impl Layout {
    /// Rows (at least one) as one Arrow batch of this layout's schema.
    pub fn batch(&self, rows: &[Value]) -> Result<RecordBatch> {
        if rows.is_empty() {
            return Err(Error::BadRecord("no rows".into()));
        }
        decode((self.schema)(), rows)
    }

    /// The `dt=YYYY-MM-DD` partition of a row: the UTC date of its time column.
    pub fn dt(&self, row: &Value) -> Result<String> {
        let t = row[self.time_column].as_str().unwrap_or_default();
        let at = chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| Error::BadRecord(format!("{} `{t}`: {e}", self.time_column)))?;
        Ok(at
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d")
            .to_string())
    }

    /// The row of one input record; it must also encode on its own, so one bad record cannot
    /// fail a whole file.
    pub fn convert(&self, record: &Value) -> Result<Value> {
        let row = (self.row)(record)?;
        self.batch(std::slice::from_ref(&row))?;
        Ok(row)
    }

    /// Parquet bytes for `rows` (all of one `dt`).
    pub fn parquet_bytes(&self, rows: &[Value]) -> Result<Vec<u8>> {
        parquet_of(&self.batch(rows)?)
    }
}

/// Where a table lives: a store, the table's folder in it, and what it holds.
#[derive(Debug, Clone)]
pub struct Table {
    pub store: std::sync::Arc<dyn ObjectStore>,
    /// The table folder (`<warehouse prefix>/garments`).
    pub root: Path,
    pub layout: Layout,
}

/// One input range: the rows of offsets `first..=last` of `topic`/`partition` (bad records
/// inside the range were dead-lettered and have no row).
#[derive(Debug, Clone)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// What [`Table::write_range`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// New files (their paths) and the marker were written.
    Files(Vec<String>),
    /// A marker for this range's first offset already existed: nothing written; the earlier
    /// range ended at this offset.
    AlreadyThere { last: i64 },
}

fn file_topic(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// How every FlashFit Parquet file is written: Snappy, row groups of 64Ki rows.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_created_by("flashfit".into())
        .build()
}

impl Table {
    pub fn new(store: std::sync::Arc<dyn ObjectStore>, root: Path, layout: Layout) -> Self {
        Table {
            store,
            root,
            layout,
        }
    }

    fn marker(&self, topic: &str, partition: i32, first: i64) -> Path {
        self.root
            .clone()
            .join("_ranges")
            .join(file_topic(topic).as_str())
            .join(partition.to_string().as_str())
            .join(format!("{first:020}").as_str())
    }

    /// Every range of `topic`/`partition` already in the table: first offset → last offset.
    pub async fn ranges(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<std::collections::BTreeMap<i64, i64>> {
        use futures::TryStreamExt;
        let dir = self
            .root
            .clone()
            .join("_ranges")
            .join(file_topic(topic).as_str())
            .join(partition.to_string().as_str());
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&dir)).try_collect().await?;
        let mut out = std::collections::BTreeMap::new();
        for m in metas {
            let Some(first) = m.location.filename().and_then(|f| f.parse::<i64>().ok()) else {
                continue;
            };
            if let Some(last) = self.existing(topic, partition, first).await? {
                out.insert(first, last);
            }
        }
        Ok(out)
    }

    /// The last offset of the range already written from `first`, if any.
    pub async fn existing(&self, topic: &str, partition: i32, first: i64) -> Result<Option<i64>> {
        match self.store.get(&self.marker(topic, partition, first)).await {
            Ok(r) => {
                let body = r.bytes().await?;
                let text = String::from_utf8_lossy(&body);
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|e| Error::Storage(format!("range marker `{text}`: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `rows` (table rows, see [`crate::garments::row`]) as the range's files, then its
    /// marker. Idempotent: a range whose marker exists is not written again.
    pub async fn write_range(&self, range: &Range, rows: &[Value]) -> Result<Written> {
        if let Some(last) = self
            .existing(&range.topic, range.partition, range.first)
            .await?
        {
            return Ok(Written::AlreadyThere { last });
        }
        let mut by_dt: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for r in rows {
            by_dt.entry(self.layout.dt(r)?).or_default().push(r.clone());
        }
        let name = format!(
            "part-{}-{:03}-{:020}-{:020}.parquet",
            file_topic(&range.topic),
            range.partition,
            range.first,
            range.last
        );
        let mut written = Vec::new();
        for (dt, rows) in by_dt {
            let path = self
                .root
                .clone()
                .join(format!("dt={dt}").as_str())
                .join(name.as_str());
            let bytes = self.layout.parquet_bytes(&rows)?;
            put_once(self.store.as_ref(), &path, Bytes::from(bytes)).await?;
            written.push(path.to_string());
        }
        let marker = self.marker(&range.topic, range.partition, range.first);
        put_once(
            self.store.as_ref(),
            &marker,
            Bytes::from(range.last.to_string()),
        )
        .await?;
        Ok(Written::Files(written))
    }
}

/// Create-only put. An object already there is left alone: the same range always produces the
/// same rows, so an earlier attempt's file is as good as this one.
async fn put_once(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<()> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(path, PutPayload::from(bytes.clone()), opts)
        .await
    {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        // Servers without conditional writes: check, then put.
        Err(object_store::Error::NotImplemented { .. }) => match store.head(path).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                store.put(path, PutPayload::from(bytes)).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
