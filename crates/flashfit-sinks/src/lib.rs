//! Parquet sinks: the `garments` log ([`garments`]: schema and rows) and its
//! `garment_deletes` tombstones ([`deletes`]), written as replay-safe files on object storage
//! ([`table`]) by `flashfit worker parquet` ([`stage`]); `garments_current` ([`compact`]);
//! the A/B `kpi_events` table ([`kpi_events`]) and its `kpi_daily` rollup ([`kpi`]). Each
//! table's schema and row function are named in [`layout`], which the writer and the rollups
//! depend on. [`sql`] runs DataFusion SQL over the tables, out of core.

pub mod columns;
pub mod compact;
pub mod deletes;
pub mod funnel;
pub mod garments;
pub mod kpi;
pub mod kpi_events;
pub mod layout;
pub mod sql;
pub mod stage;
pub mod table;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record cannot become a row: dead-letter it, retrying cannot help.
    #[error("bad record: {0}")]
    BadRecord(String),
    /// Writing or reading the table failed; retrying may help.
    #[error("storage: {0}")]
    Storage(String),
    /// Encoding Parquet failed (a bug or a schema mismatch).
    #[error("parquet: {0}")]
    Parquet(String),
    /// Something the table wrote earlier is not readable (a corrupt range marker): an operator
    /// must look; retrying cannot help.
    #[error("corrupt table state: {0}")]
    Corrupt(String),
    /// A SQL query over the tables failed (a bad predicate, an unknown column).
    #[error("query: {0}")]
    Query(String),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Storage(_))
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Error::Parquet(e.to_string())
    }
}
