//! Vectors in LanceDB: the `garments` table — one row per garment (upserted by `garment_id`)
//! with its user, category, colours, style tags, caption, the 1280-d image vector, the 384-d
//! text vector and the model version — its `garment_deletes` tombstones, `flashfit worker
//! lance` ([`stage`]), table upkeep ([`upkeep`]) and search ([`search`]).

pub mod rows;
pub mod search;
pub mod stage;
pub mod upkeep;
pub mod wardrobe;

use std::sync::Arc;

use flashfit_config::{LanceConfig, S3Config};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record cannot become a row: dead-letter it.
    #[error("bad record: {0}")]
    BadRecord(String),
    /// LanceDB or its storage failed; retrying may help.
    #[error("lancedb: {0}")]
    Lance(#[from] lancedb::Error),
    /// The table was made for another embedder (other vector sizes): an operator must choose a
    /// table; retrying cannot help.
    #[error("{0}")]
    Mismatch(String),
}

impl Error {
    /// Retry (never dead-letter) for LanceDB failures and for a table of the wrong embedder:
    /// the records are fine, the table is not, and the worker holds them (logging the error)
    /// until an operator points it at the right table.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Lance(_) | Error::Mismatch(_))
    }
}

/// A string literal for a LanceDB filter.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `'a', 'b', …` for a filter's `IN (…)`.
pub(crate) fn id_list<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    ids.into_iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens the LanceDB database at `uri` (`s3://bucket/prefix`, `file:///dir` or a path), with
/// the S3 settings FlashFit uses everywhere. Tables opened through it see other processes'
/// commits within `lance.read_consistency_ms`: without that, a handle keeps reading the
/// version it opened (new garments never appear, deleted ones stay, and pruned versions'
/// files vanish under it).
pub async fn connect(uri: &str, s3: &S3Config, lance: &LanceConfig) -> Result<lancedb::Connection> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    let mut b = lancedb::connect(path)
        .read_consistency_interval(std::time::Duration::from_millis(lance.read_consistency_ms));
    if uri.starts_with("s3://") {
        let region = s3.region.clone().unwrap_or_else(|| "us-east-1".into());
        let mut opts: Vec<(&str, String)> = vec![("aws_region", region)];
        if let Some(e) = &s3.endpoint_url {
            opts.push(("aws_endpoint", e.clone()));
            opts.push(("aws_virtual_hosted_style_request", "false".into()));
        }
        if s3.allow_http {
            opts.push(("allow_http", "true".into()));
        }
        if let Some(k) = &s3.access_key_id {
            opts.push(("aws_access_key_id", k.expose().to_owned()));
        }
        if let Some(k) = &s3.secret_access_key {
            opts.push(("aws_secret_access_key", k.expose().to_owned()));
        }
        for (k, v) in opts {
            b = b.storage_option(k, v);
        }
    }
    Ok(b.execute().await?)
}

/// The garments table, created empty with [`rows::schema`] when missing; a table made
/// before columns were added to the schema gets them (all null until rows are rewritten). A
/// table whose vector columns have other sizes than `dims` (another embedder's) is refused.
pub async fn garments(
    db: &lancedb::Connection,
    name: &str,
    dims: rows::VectorDims,
) -> Result<lancedb::Table> {
    let t = open_or_create(db, name, rows::schema(dims)).await?;
    let have = t.schema().await?;
    match rows::VectorDims::of(&have) {
        Some(made) if made == dims => {}
        made => {
            return Err(Error::Mismatch(format!(
                "LanceDB table `{name}` holds vectors of {}; the model manifest's [embedder] \
                 makes image vectors of {} and text vectors of {} values: set `[lance] table` \
                 (FLASHFIT_LANCE__TABLE) to a table for this embedder",
                made.map_or("no known sizes".to_owned(), |m| format!(
                    "{} (image) and {} (text) values",
                    m.image, m.text
                )),
                dims.image,
                dims.text
            )));
        }
    }
    let missing: Vec<arrow::datatypes::Field> = rows::added_columns()
        .into_iter()
        .filter(|f| have.field_with_name(f.name()).is_err())
        .collect();
    if !missing.is_empty() {
        tracing::info!(table = name, columns = ?missing.iter().map(|f| f.name()).collect::<Vec<_>>(), "adding columns");
        let added = Arc::new(arrow::datatypes::Schema::new(missing));
        match t
            .add_columns()
            .transform(lancedb::table::NewColumnTransform::AllNulls(added.clone()))
            .execute()
            .await
        {
            Ok(_) => {}
            // Another worker added them meanwhile.
            Err(e)
                if {
                    let now = t.schema().await?;
                    added
                        .fields()
                        .iter()
                        .all(|f| now.field_with_name(f.name()).is_ok())
                } =>
            {
                tracing::debug!(error = %e, "columns already added");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(t)
}

/// The tombstone table, created empty with [`rows::tombstone_schema`] when missing.
pub async fn tombstones(db: &lancedb::Connection, name: &str) -> Result<lancedb::Table> {
    open_or_create(db, name, rows::tombstone_schema()).await
}

async fn open_or_create(
    db: &lancedb::Connection,
    name: &str,
    schema: arrow::datatypes::Schema,
) -> Result<lancedb::Table> {
    match db.open_table(name).execute().await {
        Ok(t) => Ok(t),
        Err(lancedb::Error::TableNotFound { .. }) => {
            match db
                .create_empty_table(name, Arc::new(schema))
                .execute()
                .await
            {
                Ok(t) => Ok(t),
                // Another worker created it meanwhile.
                Err(lancedb::Error::TableAlreadyExists { .. }) => {
                    Ok(db.open_table(name).execute().await?)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
