//! Table upkeep, run in the background by `flashfit worker lance` (at most every
//! `[lance] optimize_interval_ms`) and by `flashfit compact`: every upsert and delete adds a
//! small fragment and a table version, so upkeep compacts fragments, builds the indices the
//! table lacks (B-tree on `garment_id` and `user_id` once it has rows; IVF-PQ with cosine
//! distance on both vector columns once it has `[lance] index_min_rows` rows), adds new rows
//! to existing indices, and prunes versions older than `[lance] keep_versions_s`.

use flashfit_config::LanceConfig;
use lancedb::DistanceType;
use lancedb::index::Index;
use lancedb::index::scalar::BTreeIndexBuilder;
use lancedb::index::vector::IvfPqIndexBuilder;
use lancedb::table::{CompactionOptions, Duration, OptimizeAction, OptimizeOptions};
use serde::Serialize;

use crate::Result;

/// What one upkeep run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub table: String,
    pub rows: usize,
    pub fragments_removed: usize,
    pub fragments_added: usize,
    /// Columns that got an index in this run.
    pub indexed: Vec<String>,
    pub versions_pruned: u64,
    pub bytes_removed: u64,
}

/// The scalar columns every FlashFit LanceDB table is looked up by.
const SCALAR_COLUMNS: &[&str] = &["garment_id", "user_id"];
/// The vector columns of the garments table.
pub const VECTOR_COLUMNS: &[&str] = &["image_vector", "text_vector"];

/// One upkeep pass over `table` (any FlashFit table: columns it lacks are skipped).
pub async fn run(table: &lancedb::Table, cfg: &LanceConfig) -> Result<Report> {
    let mut report = Report {
        table: table.name().to_owned(),
        ..Report::default()
    };
    let compacted = table
        .optimize(OptimizeAction::Compact {
            options: CompactionOptions::default(),
            remap_options: None,
        })
        .await?;
    if let Some(c) = compacted.compaction {
        report.fragments_removed = c.fragments_removed;
        report.fragments_added = c.fragments_added;
    }
    report.rows = table.count_rows(None).await?;
    let schema = table.schema().await?;
    let has = |c: &str| schema.field_with_name(c).is_ok();
    let indexed: Vec<String> = table
        .list_indices()
        .await?
        .into_iter()
        .flat_map(|i| i.columns)
        .collect();
    let missing = |c: &str| has(c) && !indexed.iter().any(|i| i == c);
    if report.rows > 0 {
        for c in SCALAR_COLUMNS.iter().copied().filter(|c| missing(c)) {
            table
                .create_index(&[c], Index::BTree(BTreeIndexBuilder::default()))
                .execute()
                .await?;
            report.indexed.push(c.to_owned());
        }
    }
    if report.rows >= cfg.index_min_rows.max(256) {
        for c in VECTOR_COLUMNS.iter().copied().filter(|c| missing(c)) {
            let ivf = IvfPqIndexBuilder::default().distance_type(DistanceType::Cosine);
            table
                .create_index(&[c], Index::IvfPq(ivf))
                .execute()
                .await?;
            report.indexed.push(c.to_owned());
        }
    }
    if !indexed.is_empty() {
        table
            .optimize(OptimizeAction::Index(OptimizeOptions::default()))
            .await?;
    }
    let older_than = Duration::try_seconds(i64::try_from(cfg.keep_versions_s).unwrap_or(i64::MAX))
        .unwrap_or_else(|| Duration::days(7));
    let pruned = table
        .optimize(OptimizeAction::Prune {
            older_than: Some(older_than),
            delete_unverified: None,
            error_if_tagged_old_versions: None,
        })
        .await?;
    if let Some(p) = pruned.prune {
        report.versions_pruned = p.old_versions;
        report.bytes_removed = p.bytes_removed;
    }
    Ok(report)
}
