//! What each Parquet table holds: its Arrow schema, how one input message becomes a row, and
//! the time column whose UTC day is its `dt=` partition ([`Layout`]: [`GARMENTS`],
//! [`GARMENT_DELETES`], [`KPI_EVENTS`]), and how every FlashFit Parquet file is encoded. The
//! replay-safe writer ([`crate::table`]) and the rollups ([`crate::compact`], [`crate::kpi`])
//! depend on this module; it depends only on the row modules.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use flashfit_runtime::Message;

use crate::{Error, Result, deletes, funnel, garments, kpi_events};

/// What a table holds: its Arrow schema, how an input record becomes a row, and the
/// timestamp column whose UTC day is the `dt=` partition.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub name: &'static str,
    pub schema: fn() -> SchemaRef,
    /// The row of one consumed message (most tables read only its value).
    pub row: fn(&Message) -> Result<Value>,
    pub time_column: &'static str,
}

/// The `garments` log (records of `flashfit.embedded`).
pub const GARMENTS: Layout = Layout {
    name: "garments",
    schema: garments::schema,
    row: |m| garments::row(m.payload()),
    time_column: "processed_at",
};

/// The `garment_deletes` tombstones (events of `flashfit.deletes`).
pub const GARMENT_DELETES: Layout = Layout {
    name: "garment_deletes",
    schema: deletes::schema,
    row: |m| deletes::row(m.payload()),
    time_column: "deleted_at",
};

/// A/B KPI events (events of `flashfit.kpi`).
pub const KPI_EVENTS: Layout = Layout {
    name: "kpi_events",
    schema: kpi_events::schema,
    row: |m| kpi_events::row(m.payload()),
    time_column: "ts",
};

/// Every status of `flashfit.status` (the upload funnel).
pub const STATUSES: Layout = Layout {
    name: "statuses",
    schema: funnel::statuses_schema,
    row: funnel::status_row,
    time_column: "ts",
};

/// Every dead letter of every `flashfit.dlq.<stage>`, its reason from the headers.
pub const DEAD_LETTERS: Layout = Layout {
    name: "dead_letters",
    schema: funnel::dead_letters_schema,
    row: funnel::dead_letter_row,
    time_column: "time",
};

/// Every feedback event of `flashfit.feedback`.
pub const FEEDBACK_EVENTS: Layout = Layout {
    name: "feedback_events",
    schema: funnel::feedback_schema,
    row: funnel::feedback_row,
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
    pub fn convert(&self, msg: &Message) -> Result<Value> {
        let row = (self.row)(msg)?;
        self.batch(std::slice::from_ref(&row))?;
        Ok(row)
    }

    /// Parquet bytes for `rows` (all of one `dt`).
    pub fn parquet_bytes(&self, rows: &[Value]) -> Result<Vec<u8>> {
        parquet_of(&self.batch(rows)?)
    }
}

/// How every FlashFit Parquet file is written: Snappy, row groups of 64Ki rows.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_created_by("flashfit".into())
        .build()
}

/// One Parquet object written as batches arrive: row groups are uploaded in parts while the
/// rest is computed (memory holds one row group, not the file), and the object appears in
/// one atomic step when the upload completes (S3: the multipart upload's completion; a local
/// directory: a rename). Until then readers see the previous object.
pub struct ParquetUpload {
    writer: ArrowWriter<Vec<u8>>,
    upload: object_store::WriteMultipart,
    rows: usize,
}

impl std::fmt::Debug for ParquetUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetUpload")
            .field("rows", &self.rows)
            .finish()
    }
}

/// Parts of at least this size are uploaded (S3's minimum part is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;

impl ParquetUpload {
    pub async fn start(
        store: &dyn object_store::ObjectStore,
        path: &object_store::path::Path,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<Self> {
        use object_store::ObjectStoreExt;
        let upload = store.put_multipart(path).await?;
        Ok(ParquetUpload {
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()))?,
            upload: object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            rows: 0,
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows();
        if self.writer.inner_mut().len() >= PART_BYTES {
            let bytes = std::mem::take(self.writer.inner_mut());
            self.upload.wait_for_capacity(2).await?;
            self.upload.write(&bytes);
        }
        Ok(())
    }

    /// Completes the object; returns its row count.
    pub async fn finish(mut self) -> Result<usize> {
        self.writer.finish()?;
        let bytes = std::mem::take(self.writer.inner_mut());
        self.upload.write(&bytes);
        self.upload.finish().await?;
        Ok(self.rows)
    }

    /// Abandons the upload: the previous object stays.
    pub async fn abort(self) {
        let _ = self.upload.abort().await;
    }
}
