//! User preferences in SQL through sqlx (seed: "Personalization"): SQLite by default,
//! PostgreSQL in production, one code path (sqlx's Any driver, portable SQL, migrations in
//! `migrations/`). [`Store::apply`] turns one feedback event into weight updates — the
//! signal's weight × 0.1 on each garment's category, primary colour and style tags — and
//! records the event id in the same transaction, so a redelivered or replayed event changes
//! nothing. [`stage::FeedbackStage`] is `flashfit worker feedback`.

pub mod stage;
mod store;
#[doc(hidden)]
pub mod suite;

pub use store::{Applied, Store};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed or is unreachable; retrying may help.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The configuration is wrong (bad URL, failed migration): an operator must act.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// True when the same statement may succeed later: connection, pool and I/O failures are
    /// transient; a value the database refuses (PostgreSQL class 22 data exceptions such as a
    /// NUL byte in text, class 23 constraint violations; SQLite's too-big, mismatch and
    /// constraint errors) or a configuration error is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Database(db)) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                !(code.starts_with("22")
                    || code.starts_with("23")
                    || matches!(code.as_str(), "18" | "19" | "20"))
            }
            Error::Database(
                sqlx::Error::Encode(_)
                | sqlx::Error::Decode(_)
                | sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::TypeNotFound { .. }
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::ColumnIndexOutOfBounds { .. }
                | sqlx::Error::RowNotFound,
            ) => false,
            Error::Database(_) => true,
            Error::Config(_) => false,
        }
    }
}
