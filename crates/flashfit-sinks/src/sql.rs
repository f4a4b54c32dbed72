//! SQL over the warehouse tables with DataFusion, out of core: a table's Parquet files are
//! streamed in one file at a time (read with the `parquet` crate: DataFusion's own Parquet
//! reader is not in the build), so memory holds one file plus the query's state, not the
//! table. Used by `flashfit reprocess` (the `garments_current` view, [`CURRENT_VIEW`]).

use std::sync::Arc;

use arrow::array::{Array, AsArray, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::table::Table;
use crate::{Error, Result};

/// The `garments_current` view over the `garments` log and the `garment_deletes` tombstones:
/// the latest row per garment from its owner (the user of its first processing; ties to the
/// larger `event_id`), garments the owner deleted left out. The same rule as `flashfit
/// compact` and the DuckDB query in the README.
pub const CURRENT_VIEW: &str = include_str!("../../../schemas/garments_current.sql");

/// Per garment: its owner, the event and time of the owner's latest processing, and whether
/// the owner deleted it — the rule of [`CURRENT_VIEW`] with the keys only, so `flashfit
/// compact` sorts four columns, not every column, when it spills.
pub const WINNERS: &str = "
with owned as (
  select garment_id, user_id, event_id, processed_at,
         first_value(user_id) over (partition by garment_id order by processed_at, event_id) as owner
  from garments),
ranked as (
  select garment_id, owner, event_id, processed_at,
         row_number() over (partition by garment_id order by processed_at desc, event_id desc) as rank__
  from owned where user_id = owner)
select r.garment_id, r.owner, r.event_id, r.processed_at, d.garment_id is not null as deleted
from ranked r
left join (select distinct garment_id, user_id from garment_deletes) d
  on d.garment_id = r.garment_id and d.user_id = r.owner
where r.rank__ = 1";

/// `kpi_daily` from `kpi_events`: per experiment, variant and UTC day; an event id seen
/// twice counts once; events without variants are in no experiment's rows.
pub const KPI_DAILY: &str = include_str!("../../../schemas/kpi_daily.sql");

/// `kpi_users` from `kpi_events` and `experiment_windows`: per experiment, variant and user.
pub const KPI_USERS: &str = include_str!("../../../schemas/kpi_users.sql");

/// How much memory a query may hold before its sorts and aggregations spill, and where.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: usize,
    /// Partitions a query runs in (each spilling operator gets its share of the memory).
    pub partitions: usize,
    /// Spill files go here (default: the OS temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
}

impl Default for Limits {
    /// 256 MiB for the operators, two partitions (the process also holds one input file per
    /// partition and one output row group): `compact` of 1,000,000 garments and `kpi-daily`
    /// of 10,000,000 events stay under 1 GiB of RSS (`flashfit bench rollups`; one partition
    /// measured slower and larger).
    fn default() -> Self {
        Limits {
            memory_bytes: 256 * 1024 * 1024,
            partitions: 2,
            spill_dir: None,
        }
    }
}

/// A DataFusion session bounded by `limits`: two partitions, spilling to disk.
pub fn session(limits: &Limits) -> Result<SessionContext> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let mode = match &limits.spill_dir {
        Some(d) => DiskManagerMode::Directories(vec![d.clone()]),
        None => DiskManagerMode::OsTmpDirectory,
    };
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
        .build_arc()
        .map_err(|e| Error::Query(e.to_string()))?;
    let config = datafusion::prelude::SessionConfig::new()
        .with_target_partitions(limits.partitions.max(1))
        .with_batch_size(8192);
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// A derived column the `garments` table gets in SQL: every model of the row as
/// `name@version` (for predicates like `list_contains(model_versions, 'efficientnet-lite0@1')`).
pub const MODEL_VERSIONS: &str = "model_versions";

/// The table's data files (range markers and staging left out), in path order.
pub async fn data_files(table: &Table) -> Result<Vec<Path>> {
    let metas: Vec<_> = table.store.list(Some(&table.root)).try_collect().await?;
    let mut files: Vec<Path> = metas
        .into_iter()
        .map(|m| m.location)
        .filter(|p| p.as_ref().ends_with(".parquet") && !p.as_ref().contains("/_ranges/"))
        .collect();
    files.sort();
    Ok(files)
}

/// One table as a DataFusion source: its files, read one after the other.
#[derive(Debug)]
struct Files {
    table: Table,
    files: Vec<Path>,
    schema: SchemaRef,
    derive: Option<fn(RecordBatch) -> Result<RecordBatch>>,
}

impl PartitionStream for Files {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let store = self.table.store.clone();
        let derive = self.derive;
        let schema = self.schema.clone();
        let batches = futures::stream::iter(self.files.clone())
            .then(move |f| {
                let store = store.clone();
                let schema = schema.clone();
                async move {
                    let bytes: Bytes = store.get(&f).await?.bytes().await?;
                    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
                    let batches = reader
                        .map(|b| {
                            let b = b.map_err(|e| Error::Parquet(format!("{f}: {e}")))?;
                            let b = match derive {
                                Some(d) => d(b)?,
                                None => b,
                            };
                            conform(b, &schema)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok::<_, Error>(futures::stream::iter(
                        batches.into_iter().map(Ok::<RecordBatch, Error>),
                    ))
                }
            })
            .try_flatten()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

/// A file's batch in the table's schema: columns a file written before they were added are
/// nulls (columns are only ever added, nullable), columns in the table's order.
fn conform(b: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if b.schema().fields() == schema.fields() {
        return Ok(b);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type())
                .map_err(|e| Error::Parquet(format!("column `{}`: {e}", f.name()))),
            None => Ok(arrow::array::new_null_array(f.data_type(), b.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Parquet(e.to_string()))
}

/// Adds [`MODEL_VERSIONS`] to a `garments` batch.
fn with_model_versions(b: RecordBatch) -> Result<RecordBatch> {
    let models = b
        .column_by_name("models")
        .ok_or_else(|| Error::Parquet("garments has no models column".into()))?
        .as_list::<i32>();
    let mut out = ListBuilder::new(StringBuilder::new());
    for i in 0..models.len() {
        if models.is_valid(i) {
            let row = models.value(i);
            let s = row.as_struct();
            let (name, version) = (
                s.column_by_name("name").map(|c| c.as_string::<i32>()),
                s.column_by_name("version").map(|c| c.as_string::<i32>()),
            );
            if let (Some(n), Some(v)) = (name, version) {
                for j in 0..s.len() {
                    out.values()
                        .append_value(format!("{}@{}", n.value(j), v.value(j)));
                }
            }
        }
        out.append(true);
    }
    let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| (**f).clone()).collect();
    fields.push(models_field());
    let mut columns = b.columns().to_vec();
    columns.push(Arc::new(out.finish()));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Parquet(e.to_string()))
}

fn models_field() -> Field {
    Field::new(
        MODEL_VERSIONS,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )
}

/// Registers `table` under `name` in `ctx`, streamed from its files as they are now.
pub async fn register(ctx: &SessionContext, name: &str, table: &Table) -> Result<usize> {
    let files = data_files(table).await?;
    let n = files.len();
    let mut schema = (table.layout.schema)();
    let mut derive = None;
    if table.layout.name == crate::layout::GARMENTS.name {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
        fields.push(models_field());
        schema = Arc::new(Schema::new(fields));
        derive = Some(with_model_versions as fn(RecordBatch) -> Result<RecordBatch>);
    }
    let source = Files {
        table: table.clone(),
        files,
        schema: schema.clone(),
        derive,
    };
    let provider = StreamingTable::try_new(schema, vec![Arc::new(source)])
        .map_err(|e| Error::Parquet(e.to_string()))?;
    ctx.register_table(name, Arc::new(provider))
        .map_err(|e| Error::Parquet(e.to_string()))?;
    Ok(n)
}

/// A session with `garments` (plus [`MODEL_VERSIONS`]), `garment_deletes` and the
/// `garments_current` view registered.
pub async fn garments_session(
    garments: &Table,
    deletes: &Table,
    limits: &Limits,
) -> Result<SessionContext> {
    let ctx = session(limits)?;
    register(&ctx, "garments", garments).await?;
    register(&ctx, "garment_deletes", deletes).await?;
    let view = ctx
        .sql(CURRENT_VIEW)
        .await
        .map_err(|e| Error::Parquet(format!("garments_current view: {e}")))?
        .into_view();
    ctx.register_table("garments_current", view)
        .map_err(|e| Error::Parquet(e.to_string()))?;
    Ok(ctx)
}

/// Runs `query` and hands each result batch to `each`, as they come.
pub async fn for_each_batch(
    ctx: &SessionContext,
    query: &str,
    mut each: impl AsyncFnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let df = ctx
        .sql(query)
        .await
        .map_err(|e| Error::Query(e.to_string()))?;
    let mut stream = df
        .execute_stream()
        .await
        .map_err(|e| Error::Query(e.to_string()))?;
    while let Some(b) = stream.next().await {
        each(b.map_err(|e| Error::Query(e.to_string()))?).await?;
    }
    Ok(())
}

/// The text columns `columns` of the rows of `query`, in order.
pub async fn strings(
    ctx: &SessionContext,
    query: &str,
    columns: &[&str],
) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for_each_batch(ctx, query, async |b| {
        let cols = columns
            .iter()
            .map(|c| {
                let col = b
                    .column_by_name(c)
                    .ok_or_else(|| Error::Query(format!("the query has no column `{c}`")))?;
                arrow::compute::cast(col, &DataType::Utf8).map_err(|e| Error::Query(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        for i in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        if s.is_valid(i) {
                            s.value(i).to_owned()
                        } else {
                            String::new()
                        }
                    })
                    .collect(),
            );
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// The README shows analysts the SQL the tools run, as it is in `schemas/*.sql`.
    #[test]
    fn the_readme_shows_the_sql_the_tools_run() {
        let readme = include_str!("../../../README.md");
        for sql in [super::CURRENT_VIEW, super::KPI_DAILY, super::KPI_USERS] {
            for line in sql.lines().filter(|l| !l.starts_with("--")) {
                assert!(readme.contains(line), "README lacks `{line}`");
            }
        }
    }

    use std::sync::Arc;

    use object_store::memory::InMemory;
    use serde_json::Value;

    use super::*;
    use crate::garments;
    use crate::layout::{GARMENT_DELETES, GARMENTS};
    use crate::table::Range;
    use crate::table::tests::{bytes, record};

    fn range(first: i64, last: i64) -> Range {
        Range {
            topic: "flashfit.embedded".into(),
            partition: 0,
            first,
            last,
        }
    }

    /// The view keeps the latest row per garment, from its owner, without deleted garments;
    /// the derived model versions can be filtered on; a bad predicate is an error naming it.
    #[tokio::test]
    async fn the_current_view_matches_compaction_and_model_versions_filter() {
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
        let t = Table::new(store.clone(), Path::from("wh/garments"), GARMENTS);
        let deletes = Table::new(store, Path::from("wh/garment_deletes"), GARMENT_DELETES);
        let rec = |event: &str, garment: &str, user: &str, at: &str, version: &str| {
            let mut r = record(event, at);
            r["garment_id"] = garment.into();
            r["user_id"] = user.into();
            r["models"] = serde_json::json!([
                {"stage": "classify", "name": "efficientnet-lite0", "version": version}
            ]);
            garments::row(&bytes(&r)).expect("row")
        };
        let rows: Vec<Value> = vec![
            rec("e1", "g1", "u1", "2026-11-20T10:00:00Z", "1"),
            rec("e2", "g2", "u1", "2026-11-20T11:00:00Z", "1"),
            // g1 reprocessed by version 2: the newer row wins.
            rec("e3", "g1", "u1", "2026-11-22T09:00:00Z", "2"),
            // Someone else naming g2: not the owner.
            rec("e4", "g2", "u2", "2026-11-23T09:00:00Z", "2"),
            rec("e5", "g3", "u2", "2026-11-23T09:00:00Z", "1"),
        ];
        t.write_range(&range(0, 2), &rows[..3])
            .await
            .expect("write");
        t.write_range(&range(3, 4), &rows[3..])
            .await
            .expect("write");
        crate::table::tests::tombstone(&deletes, "u2", "g3", 0).await;

        let ctx = garments_session(&t, &deletes, &Limits::default())
            .await
            .expect("session");
        let q = |pred: &str| {
            format!(
                "select event_id, garment_id from garments_current where {pred} \
                 order by garment_id"
            )
        };
        let all = strings(&ctx, &q("true"), &["event_id", "garment_id"])
            .await
            .expect("query");
        assert_eq!(all, vec![vec!["e3", "g1"], vec!["e2", "g2"]]);
        // `flashfit compact` (two passes, under a small memory limit) writes
        // the same rows as the view.
        let tiny = Limits {
            memory_bytes: 32 * 1024 * 1024,
            partitions: 2,
            spill_dir: None,
        };
        let out = Path::from("wh/garments_current");
        let c = crate::compact::compact_current_with(&t, &deletes, &out, &tiny)
            .await
            .expect("compact");
        assert_eq!(
            (c.rows_read, c.rows_written, c.deleted, c.not_owner),
            (5, 2, 1, 1)
        );
        let bytes = crate::table::tests::object(&t, c.path.as_str()).await;
        let mut ids: Vec<String> = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("reader")
            .build()
            .expect("reader")
            .flat_map(|b| {
                let b = b.expect("batch");
                let e = b.column(0).as_string::<i32>().clone();
                (0..e.len()).map(move |i| e.value(i).to_owned())
            })
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["e2", "e3"]);
        let old = strings(
            &ctx,
            &q("list_contains(model_versions, 'efficientnet-lite0@1')"),
            &["garment_id"],
        )
        .await
        .expect("query");
        assert_eq!(old, vec![vec!["g2"]]);
        let by_time = strings(&ctx, &q("processed_at < '2026-11-21'"), &["garment_id"])
            .await
            .expect("query");
        assert_eq!(by_time, vec![vec!["g2"]]);
        let e = strings(&ctx, &q("no_such_column = 1"), &["garment_id"])
            .await
            .expect_err("bad predicate");
        assert!(e.to_string().contains("no_such_column"), "{e}");
    }
}
