//! A Parquet table on object storage that a replayed topic cannot duplicate, whatever the crash
//! point and the batch boundaries.
//!
//! The sink writes the records of one input partition in offset ranges. A range becomes one
//! Parquet file per `dt=` partition, named after the input topic, partition and offset range
//! (`<table>/dt=YYYY-MM-DD/part-<topic>-<partition>-<first>-<last>.parquet`). A range is
//! written in three steps:
//!
//! 1. its files are staged outside the table (`<warehouse>/_staging/<table>/<attempt>/…`,
//!    where no reader's glob looks);
//! 2. the range marker (`<table>/_ranges/<topic>/<partition>/<first>`, JSON: `last`, the
//!    table files and their staged copies) is created, create-only: **this is the commit**.
//!    Of two writers of the same first offset (a restart with other batch boundaries, or two
//!    replicas around a rebalance) exactly one wins; the other adopts the winner's range;
//! 3. the files are put in the table (create-only) and the staged copies deleted.
//!
//! A range's rows become readable only in step 3, and only for the range its marker names, so
//! no offset is ever readable twice. A crash between 2 and 3 leaves a committed range whose
//! files are missing: the next writer that meets the marker (a retry, a restart from the
//! committed offset, a replay) rolls it forward from the staged copies before moving on.
//! Offsets are committed only after step 3, so committed offsets are range boundaries.
//! Markers written before staging existed hold just `<last>`; they read as ranges whose files
//! are in place. Right after its marker, a writer puts an empty index entry
//! `<first>.<last>` beside it, so [`Table::ranges`] costs one LIST; the entry is only ever
//! derived from a committed marker, never a commit itself.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::layout::Layout;
use crate::{Error, Result};

/// A range marker's body: the commit record of one range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub last: i64,
    /// The range's files in the table.
    #[serde(default)]
    pub files: Vec<String>,
    /// Their staged copies, in the same order (deleted once the files are in place).
    #[serde(default)]
    pub staged: Vec<String>,
}

impl Marker {
    fn parse(body: &[u8]) -> Result<Self> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if let Ok(last) = text.parse::<i64>() {
            return Ok(Marker {
                last,
                files: Vec::new(),
                staged: Vec::new(),
            });
        }
        serde_json::from_str(text)
            .map_err(|e| Error::Corrupt(format!("range marker `{text}`: {e}")))
    }
}

/// Called at each step of a range write with the step's name (`staged`, `marker`, `file`,
/// `cleanup`); an error stops the write there, as a crash would. For fault-injection tests.
#[derive(Clone)]
pub struct FaultHook(pub std::sync::Arc<FaultFn>);

/// The function behind a [`FaultHook`].
pub type FaultFn = dyn Fn(&str) -> Result<()> + Send + Sync;

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultHook")
    }
}

/// Where a table lives: a store, the table's folder in it, and what it holds.
#[derive(Debug, Clone)]
pub struct Table {
    pub store: std::sync::Arc<dyn ObjectStore>,
    /// The table folder (`<warehouse prefix>/garments`).
    pub root: Path,
    pub layout: Layout,
    /// Fault injection for tests (see [`FaultHook`]).
    pub faults: Option<FaultHook>,
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

impl Table {
    pub fn new(store: std::sync::Arc<dyn ObjectStore>, root: Path, layout: Layout) -> Self {
        Table {
            store,
            root,
            layout,
            faults: None,
        }
    }

    fn fault(&self, step: &str) -> Result<()> {
        match &self.faults {
            Some(f) => (f.0)(step),
            None => Ok(()),
        }
    }

    /// Where attempts stage their files: `<warehouse>/_staging/<table>`, beside the table
    /// folder, outside every reader's glob.
    fn staging(&self) -> Path {
        let parts: Vec<_> = self.root.parts().collect();
        let (name, parent) = match parts.split_last() {
            Some((n, p)) => (n.as_ref().to_owned(), p.to_vec()),
            None => ("table".to_owned(), Vec::new()),
        };
        Path::from_iter(parent).join("_staging").join(name.as_str())
    }

    fn marker(&self, topic: &str, partition: i32, first: i64) -> Path {
        self.marker_dir(topic, partition)
            .join(format!("{first:020}").as_str())
    }

    /// The index entry of a committed range: `<first>.<last>` beside its marker, so one LIST
    /// tells every range's extent. Written only from a committed marker (by its writer, or
    /// by [`Table::ranges`] for a marker without one), so it always agrees with it; the
    /// marker alone stays the commit (create-only on the first offset).
    fn index_entry(&self, topic: &str, partition: i32, first: i64, last: i64) -> Path {
        self.marker_dir(topic, partition)
            .join(format!("{first:020}.{last:020}").as_str())
    }

    fn marker_dir(&self, topic: &str, partition: i32) -> Path {
        self.root
            .clone()
            .join("_ranges")
            .join(file_topic(topic).as_str())
            .join(partition.to_string().as_str())
    }

    /// Best effort: without the entry, [`Table::ranges`] reads the marker instead.
    async fn put_index(&self, topic: &str, partition: i32, first: i64, last: i64) {
        let path = self.index_entry(topic, partition, first, last);
        if let Err(e) = self.store.put(&path, PutPayload::new()).await {
            tracing::debug!(%path, error = %e, "range index entry not written");
        }
    }

    /// Every range of `topic`/`partition` already in the table: first offset → last offset.
    /// One LIST: each committed marker's extent comes from its index entry; a marker without
    /// one (written before index entries existed, or its writer stopped in between) is read
    /// and gets its entry.
    pub async fn ranges(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<std::collections::BTreeMap<i64, i64>> {
        use futures::TryStreamExt;
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.marker_dir(topic, partition)))
            .try_collect()
            .await?;
        let mut markers = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut summary: Option<(i64, &Path)> = None;
        for m in &metas {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if let Some(upto) = name
                .strip_prefix(SUMMARY)
                .and_then(|u| u.parse::<i64>().ok())
            {
                if summary.is_none_or(|(s, _)| upto > s) {
                    summary = Some((upto, &m.location));
                }
                continue;
            }
            match name.split_once('.') {
                Some((a, b)) => {
                    if let (Ok(first), Ok(last)) = (a.parse::<i64>(), b.parse::<i64>()) {
                        index.insert(first, last);
                    }
                }
                None => {
                    if let Ok(first) = name.parse::<i64>() {
                        markers.push(first);
                    }
                }
            }
        }
        let mut out = match summary {
            Some((_, path)) => read_summary(self.store.as_ref(), path).await?,
            None => std::collections::BTreeMap::new(),
        };
        for first in markers {
            if let Some(&last) = index.get(&first) {
                out.insert(first, last);
            } else if let Some(last) = self.existing(topic, partition, first).await? {
                self.put_index(topic, partition, first, last).await;
                out.insert(first, last);
            }
        }
        Ok(out)
    }

    /// The last offset of the range already written from `first`, if any.
    pub async fn existing(&self, topic: &str, partition: i32, first: i64) -> Result<Option<i64>> {
        Ok(self
            .marker_of(topic, partition, first)
            .await?
            .map(|m| m.last))
    }

    /// The marker of the range from `first`, if committed.
    pub async fn marker_of(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
    ) -> Result<Option<Marker>> {
        match self.store.get(&self.marker(topic, partition, first)).await {
            Ok(r) => Marker::parse(&r.bytes().await?).map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the committed range from `first` complete: puts any of its files that are not in
    /// the table yet from their staged copies (a writer crashed between commit and files),
    /// then deletes the staged copies. Returns the range's last offset (`None`: no marker).
    pub async fn complete(&self, topic: &str, partition: i32, first: i64) -> Result<Option<i64>> {
        let Some(m) = self.marker_of(topic, partition, first).await? else {
            return Ok(None);
        };
        self.roll_forward(&m).await?;
        Ok(Some(m.last))
    }

    async fn roll_forward(&self, m: &Marker) -> Result<()> {
        for (file, staged) in m.files.iter().zip(&m.staged) {
            let file = Path::from(file.as_str());
            match self.store.head(&file).await {
                Ok(_) => continue,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let bytes = match self.store.get(&Path::from(staged.as_str())).await {
                Ok(r) => r.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::Corrupt(format!(
                        "committed range file {file} is missing and so is its staged copy {staged}"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(%file, "completing a committed range from its staged copy");
            put_once(self.store.as_ref(), &file, bytes).await?;
        }
        self.delete_staged(&m.staged).await;
        Ok(())
    }

    /// Best effort: a staged copy left behind is garbage, never data.
    async fn delete_staged(&self, staged: &[String]) {
        for s in staged {
            match self.store.delete(&Path::from(s.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::debug!(path = %s, error = %e, "staged copy not deleted"),
            }
        }
    }

    /// Folds the committed ranges whose markers were written before `cutoff` (older than
    /// the input topic's retention: those offsets cannot be replayed any more) into one
    /// summary object per partition (`summary-<highest first offset>`, create-only), then
    /// deletes their markers, index entries and older summaries: listing a partition stays
    /// small. [`Table::ranges`] reads the newest summary with the markers, so a sink taking
    /// over still skips every folded range. Each folded range is completed first (its files
    /// in place). Returns how many markers were folded.
    pub async fn fold_markers(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<usize> {
        use futures::TryStreamExt;
        let all: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.root.clone().join("_ranges")))
            .try_collect()
            .await?;
        // Partition folders: `_ranges/<topic>/<partition>/`.
        let mut dirs: std::collections::BTreeMap<String, Vec<&object_store::ObjectMeta>> =
            Default::default();
        for m in &all {
            let parts: Vec<_> = m.location.parts().collect();
            if parts.len() >= 3 {
                let dir = Path::from_iter(parts[..parts.len() - 1].iter().cloned());
                dirs.entry(dir.to_string()).or_default().push(m);
            }
        }
        let mut folded = 0;
        for (dir, metas) in dirs {
            folded += self.fold_dir(&Path::from(dir), &metas, cutoff).await?;
        }
        Ok(folded)
    }

    async fn fold_dir(
        &self,
        dir: &Path,
        metas: &[&object_store::ObjectMeta],
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize> {
        let mut summaries: Vec<(i64, Path)> = Vec::new();
        let mut markers: Vec<(i64, Path)> = Vec::new();
        let mut entries: std::collections::HashMap<i64, Vec<Path>> = Default::default();
        for m in metas {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if let Some(upto) = name
                .strip_prefix(SUMMARY)
                .and_then(|u| u.parse::<i64>().ok())
            {
                summaries.push((upto, m.location.clone()));
            } else if let Some((a, _)) = name.split_once('.') {
                if let Ok(first) = a.parse::<i64>() {
                    entries.entry(first).or_default().push(m.location.clone());
                }
            } else if let Ok(first) = name.parse::<i64>()
                && m.last_modified < cutoff
            {
                markers.push((first, m.location.clone()));
            }
        }
        if markers.is_empty() {
            return Ok(0);
        }
        summaries.sort();
        let mut ranges = match summaries.last() {
            Some((_, p)) => read_summary(self.store.as_ref(), p).await?,
            None => Default::default(),
        };
        for (first, path) in &markers {
            let m = match self.store.get(path).await {
                Ok(r) => Marker::parse(&r.bytes().await?)?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            self.roll_forward(&m).await?;
            ranges.insert(*first, m.last);
        }
        let upto = ranges.keys().next_back().copied().unwrap_or(0);
        let body = serde_json::to_vec(&ranges).map_err(|e| Error::Storage(e.to_string()))?;
        let path = dir.clone().join(format!("{SUMMARY}{upto:020}").as_str());
        let ours = put_create(self.store.as_ref(), &path, Bytes::from(body)).await?;
        if !ours && summaries.last().is_none_or(|(u, _)| *u != upto) {
            // Another folder wrote this summary first: it deletes what it folded.
            return Ok(0);
        }
        for (first, marker) in &markers {
            for p in std::iter::once(marker).chain(entries.get(first).into_iter().flatten()) {
                match self.store.delete(p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for (u, p) in &summaries {
            if *u != upto {
                let _ = self.store.delete(p).await;
            }
        }
        Ok(markers.len())
    }

    /// Writes `rows` (table rows, see [`crate::garments::row`]) as the range's files: staged,
    /// committed by the marker, put in place (see the module docs). Idempotent: a range whose
    /// marker exists is completed if needed and not written again; if another writer commits
    /// the same first offset first, its range is adopted.
    pub async fn write_range(&self, range: &Range, rows: &[Value]) -> Result<Written> {
        if let Some(last) = self
            .complete(&range.topic, range.partition, range.first)
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
        let attempt = format!(
            "{}-{:03}-{:020}-{}",
            file_topic(&range.topic),
            range.partition,
            range.first,
            uuid::Uuid::new_v4()
        );
        let mut files = Vec::new();
        let mut staged = Vec::new();
        let mut contents = Vec::new();
        for (dt, rows) in by_dt {
            let dir = format!("dt={dt}");
            let file = self.root.clone().join(dir.as_str()).join(name.as_str());
            let stage = self
                .staging()
                .join(attempt.as_str())
                .join(dir.as_str())
                .join(name.as_str());
            let bytes = Bytes::from(self.layout.parquet_bytes(&rows)?);
            self.store
                .put(&stage, PutPayload::from(bytes.clone()))
                .await?;
            self.fault("staged")?;
            files.push(file.to_string());
            staged.push(stage.to_string());
            contents.push(bytes);
        }
        let marker = Marker {
            last: range.last,
            files,
            staged,
        };
        let body = serde_json::to_vec(&marker).map_err(|e| Error::Storage(e.to_string()))?;
        let path = self.marker(&range.topic, range.partition, range.first);
        if !put_create(self.store.as_ref(), &path, Bytes::from(body)).await? {
            // Another writer committed this first offset: its range stands, ours is dropped.
            self.delete_staged(&marker.staged).await;
            let theirs = self
                .complete(&range.topic, range.partition, range.first)
                .await?
                .ok_or_else(|| Error::Storage(format!("range marker {path} vanished")))?;
            return Ok(Written::AlreadyThere { last: theirs });
        }
        self.fault("marker")?;
        self.put_index(&range.topic, range.partition, range.first, range.last)
            .await;
        for (file, bytes) in marker.files.iter().zip(contents) {
            put_once(self.store.as_ref(), &Path::from(file.as_str()), bytes).await?;
            self.fault("file")?;
        }
        self.delete_staged(&marker.staged).await;
        self.fault("cleanup")?;
        Ok(Written::Files(marker.files))
    }
}

/// The name prefix of a partition's summary of folded ranges.
const SUMMARY: &str = "summary-";

/// A summary's ranges: first offset → last offset.
async fn read_summary(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<std::collections::BTreeMap<i64, i64>> {
    let body = store.get(path).await?.bytes().await?;
    serde_json::from_slice(&body).map_err(|e| Error::Corrupt(format!("range summary {path}: {e}")))
}

/// Create-only put that says whether this call created the object (`false`: it existed).
async fn put_create(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<bool> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(path, PutPayload::from(bytes.clone()), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        // Servers without conditional writes: check, then put (not race-free; such servers
        // cannot arbitrate two concurrent writers).
        Err(object_store::Error::NotImplemented { .. }) => match store.head(path).await {
            Ok(_) => Ok(false),
            Err(object_store::Error::NotFound { .. }) => {
                store.put(path, PutPayload::from(bytes)).await?;
                Ok(true)
            }
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Create-only put. An object already there is left alone: the same range always produces the
/// same rows, so an earlier attempt's file is as good as this one.
async fn put_once(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<()> {
    put_create(store, path, bytes).await.map(|_| ())
}

#[cfg(test)]
pub(crate) mod tests;
