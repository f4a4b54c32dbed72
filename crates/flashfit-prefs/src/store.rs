use std::collections::BTreeMap;

use flashfit_outfits::{FEEDBACK_STEP, Item, Preferences, signal_weight};
use flashfit_schema::FeedbackEvent;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::{Error, Result};

/// The migrations in `migrations/` (`<version>_<name>.sql`), embedded at build time (no
/// database needed to build); applied once each, recorded in `_sqlx_migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What [`Store::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The weights moved (`garments` garments were found).
    New { garments: usize },
    /// The event id was applied before: nothing changed.
    Duplicate,
}

/// The preference database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

/// `sqlite://path` without options gets `mode=rwc` (create the file when missing).
fn with_defaults(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains('?') && !url.contains(":memory:") {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    }
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(Error::Config(format!(
                "database_url must be sqlite://… or postgres://… (got {})",
                url.split(':').next().unwrap_or_default()
            )));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&with_defaults(url))
            .await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations this database lacks, each in its own transaction (sqlx's
    /// migrator: checksums of applied migrations are verified, PostgreSQL takes an advisory
    /// lock so several processes can start at once). Every migration is written to be
    /// idempotent (`IF NOT EXISTS`), so a database migrated by an older FlashFit (its own
    /// `flashfit_migrations` table) takes them again without harm.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            // The database failed while migrating: as retryable as any other statement.
            sqlx::migrate::MigrateError::Execute(e) => Error::Database(e),
            // A changed or missing migration, a dirty database: an operator must act.
            other => Error::Config(format!("migrations: {other}")),
        })
    }

    /// Applies one feedback event about `garments` (the event's garments as found): the
    /// weight updates and the event record commit together, or not at all.
    pub async fn apply(&self, event: &FeedbackEvent, garments: &[Item]) -> Result<Applied> {
        let delta = signal_weight(event.signal) * FEEDBACK_STEP;
        let mut updates: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for g in garments {
            *updates.entry(("category", &g.category)).or_default() += delta;
            if let Some(c) = &g.color_primary {
                *updates.entry(("color", c)).or_default() += delta;
            }
            for t in &g.style_tags {
                *updates.entry(("style", t)).or_default() += delta;
            }
        }
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO feedback_events (event_id, user_id, signal, garments, ts, applied_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&event.event_id)
        .bind(&event.user_id)
        .bind(event.signal.as_str())
        .bind(garments.len() as i64)
        .bind(flashfit_schema::format_ts(event.ts))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Applied::Duplicate);
        }
        for ((kind, name), weight) in updates {
            sqlx::query(
                "INSERT INTO preference_weights (user_id, kind, name, weight) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, kind, name)
                 DO UPDATE SET weight = preference_weights.weight + excluded.weight",
            )
            .bind(&event.user_id)
            .bind(kind)
            .bind(name)
            .bind(weight)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO user_feedback (user_id, feedback_count) VALUES ($1, 1)
             ON CONFLICT (user_id) DO UPDATE SET feedback_count = user_feedback.feedback_count + 1",
        )
        .bind(&event.user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Applied::New {
            garments: garments.len(),
        })
    }

    /// The user's weights and feedback count (empty for an unknown user).
    pub async fn preferences(&self, user_id: &str) -> Result<Preferences> {
        let mut p = Preferences::default();
        let rows =
            sqlx::query("SELECT kind, name, weight FROM preference_weights WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        for r in rows {
            let (kind, name, weight): (String, String, f64) = (r.get(0), r.get(1), r.get(2));
            let map = match kind.as_str() {
                "category" => &mut p.category,
                "color" => &mut p.color,
                "style" => &mut p.style,
                _ => continue,
            };
            map.insert(name, weight);
        }
        p.feedback_count =
            sqlx::query("SELECT feedback_count FROM user_feedback WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get::<i64, _>(0))
                .unwrap_or(0)
                .max(0) as u64;
        Ok(p)
    }
}

fn now() -> String {
    flashfit_schema::format_ts(chrono::Utc::now())
}
