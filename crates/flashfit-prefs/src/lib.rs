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
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Database(_))
    }
}
