//! `flashfit bench lance`: the LanceDB side of the sinks on synthetic garments (vectors drawn
//! around per-category centres, so the index has structure to find): upsert rows/s through
//! the lance sink (insert, then update of existing rows), the upkeep pass that builds the
//! indices, and query latency p50/p99 — per-user search (exact, the API's query) and
//! whole-table nearest neighbours through the IVF-PQ index, with its recall@k against exact.

use std::collections::HashSet;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use flashfit_config::{LanceConfig, S3Config};
use flashfit_lance::rows::{Garment, VectorDims};
use flashfit_lance::search::Filters;
use flashfit_lance::stage::LanceSink;
use futures::TryStreamExt;
use lancedb::DistanceType;
use lancedb::query::{ExecutableQuery, QueryBase};

use flashfit_pipeline::{Error, Result};

/// Options of `flashfit bench lance`.
#[derive(Debug, Clone)]
pub struct LanceBench {
    /// Rows in the table (the floor is measured at 100,000).
    pub rows: usize,
    /// Distinct users (rows / users garments each).
    pub users: usize,
    /// Rows per upsert (the sink's batch).
    pub batch: usize,
    /// Timed queries of each kind.
    pub queries: usize,
    pub k: usize,
    /// IVF partitions searched per whole-table query.
    pub nprobes: usize,
    /// Candidates re-ranked with the full vectors: `k × refine`.
    pub refine: u32,
    /// Where the table goes; a fresh temporary directory when `None`.
    pub uri: Option<String>,
    /// Vector sizes (the model manifest's `[embedder]`).
    pub dims: VectorDims,
}

/// splitmix64: a small deterministic generator, so every run uses the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

const CATEGORIES: [&str; 12] = [
    "jeans",
    "t_shirt",
    "sneakers",
    "blazer",
    "midi_dress",
    "hoodie",
    "chinos",
    "boots",
    "shirt",
    "coat",
    "skirt",
    "sweater",
];
const COLOURS: [&str; 6] = ["navy", "black", "white", "red", "beige", "grey"];

/// Garments per style (a style: one kind of garment within a category, say navy slim chinos).
const STYLES_PER_CATEGORY: usize = 50;

/// Vectors with the structure of real embeddings: a category centre, a style within it, and
/// the garment near its style.
struct Generator {
    rng: Rng,
    image_centres: Vec<Vec<f32>>,
    text_centres: Vec<Vec<f32>>,
    image_styles: Vec<Vec<f32>>,
}

impl Generator {
    fn new(dims: VectorDims) -> Self {
        let mut rng = Rng(42);
        let mut centres = |dim: usize| -> Vec<Vec<f32>> {
            (0..CATEGORIES.len())
                .map(|_| normalised((0..dim).map(|_| rng.unit()).collect()))
                .collect()
        };
        let image_centres = centres(dims.image);
        let text_centres = centres(dims.text);
        let mut g = Generator {
            rng: Rng(7),
            image_centres,
            text_centres,
            image_styles: Vec::new(),
        };
        g.image_styles = (0..CATEGORIES.len() * STYLES_PER_CATEGORY)
            .map(|s| {
                let c = g.image_centres[s / STYLES_PER_CATEGORY].clone();
                g.near(&c, 0.7)
            })
            .collect();
        g
    }

    /// `centre` plus a random direction of norm `spread`, normalised.
    fn near(&mut self, centre: &[f32], spread: f32) -> Vec<f32> {
        let dir = normalised((0..centre.len()).map(|_| self.rng.unit()).collect());
        normalised(
            centre
                .iter()
                .zip(dir)
                .map(|(c, d)| c + spread * d)
                .collect(),
        )
    }

    fn garment(&mut self, i: usize, users: usize, at: &str) -> Garment {
        let style = (self.rng.next() % self.image_styles.len() as u64) as usize;
        let c = style / STYLES_PER_CATEGORY;
        let colour = COLOURS[(self.rng.next() % COLOURS.len() as u64) as usize];
        let image_centre = self.image_styles[style].clone();
        let text_centre = self.text_centres[c].clone();
        Garment {
            garment_id: format!("g-{i:07}"),
            user_id: format!("u-{:05}", i % users.max(1)),
            event_id: format!("e-{i:07}-{at}"),
            category: Some(CATEGORIES[c].to_owned()),
            color_primary: Some(colour.to_owned()),
            color_secondary: None,
            colors: vec![colour.to_owned()],
            style_tags: vec!["classic".into()],
            caption: Some(format!("{colour} {} style-{style}", CATEGORIES[c])),
            image_vector: self.near(&image_centre, 0.3),
            text_vector: self.near(&text_centre, 0.5),
            model_version: "bench".into(),
            processed_at: at.to_owned(),
            formality: Some((self.rng.next() % 1000) as f32 / 1000.0),
            seasons: vec!["fall".into()],
        }
    }
}

/// Runs `f` `n` times after a few warm-up calls; prints and returns (p50, p99) in ms.
async fn latency<F, Fut>(label: &str, n: usize, mut f: F) -> Result<(f64, f64)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    for i in 0..5 {
        f(i).await?;
    }
    let mut lat = crate::Latencies::new();
    let mut hits = 0usize;
    for i in 0..n {
        let t = Instant::now();
        hits += f(i + 5).await?;
        lat.record(t.elapsed());
    }
    let (p50, p99) = (lat.ms(0.5), lat.ms(0.99));
    println!(
        "  {label}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms ({n} queries, {:.1} results each)",
        lat.max_ms(),
        hits as f64 / n.max(1) as f64
    );
    Ok((p50, p99))
}

/// (garment id, caption) of every result.
async fn captions(q: impl ExecutableQuery) -> Result<Vec<(String, String)>> {
    let batches: Vec<RecordBatch> = q
        .execute()
        .await
        .map_err(lance)?
        .try_collect()
        .await
        .map_err(lance)?;
    let mut out = Vec::new();
    for b in batches {
        if let (Some(g), Some(c)) = (b.column_by_name("garment_id"), b.column_by_name("caption")) {
            let (g, c) = (g.as_string::<i32>(), c.as_string::<i32>());
            out.extend((0..b.num_rows()).map(|i| (g.value(i).to_owned(), c.value(i).to_owned())));
        }
    }
    Ok(out)
}

fn lance(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("lancedb: {e}"))
}

pub async fn lance_bench(opts: &LanceBench) -> Result<()> {
    let dims = opts.dims;
    let dir = tempfile::tempdir()?;
    let uri = opts
        .uri
        .clone()
        .unwrap_or_else(|| format!("file://{}", dir.path().display()));
    let cfg = LanceConfig {
        index_min_rows: 256,
        keep_versions_s: 0,
        optimize_interval_ms: 0,
        ..LanceConfig::default()
    };
    let sink = LanceSink::new(
        &uri,
        &S3Config::default(),
        &cfg,
        "flashfit.embedded".into(),
        "flashfit.deletes".into(),
        dims,
    );
    let mut generator = Generator::new(dims);
    let batch = opts.batch.max(1);
    println!(
        "lance bench: {} garments of {} users ({} each), {}-d image + {}-d text vectors, batches of {batch}, {uri}",
        opts.rows,
        opts.users,
        opts.rows / opts.users.max(1),
        dims.image,
        dims.text
    );

    // Insert: every garment new.
    let mut upsert_secs = 0.0;
    let mut done = 0;
    while done < opts.rows {
        let n = batch.min(opts.rows - done);
        let garments: Vec<Garment> = (done..done + n)
            .map(|i| generator.garment(i, opts.users, "2026-11-22T10:00:00.000Z"))
            .collect();
        let t = Instant::now();
        sink.upsert(&garments).await.map_err(lance)?;
        upsert_secs += t.elapsed().as_secs_f64();
        done += n;
    }
    println!(
        "  upsert (insert) {:.0} rows/s: {} rows in {upsert_secs:.1} s",
        opts.rows as f64 / upsert_secs,
        opts.rows
    );

    // Upkeep: compaction and the indices (B-tree on ids, IVF-PQ on both vector columns).
    let table = sink.table().await.map_err(lance)?.clone();
    let t = Instant::now();
    let report = flashfit_lance::upkeep::run(&table, &cfg)
        .await
        .map_err(lance)?;
    println!(
        "  upkeep {:.1} s: {} fragments → {}, indexed {:?}",
        t.elapsed().as_secs_f64(),
        report.fragments_removed,
        report.fragments_added,
        report.indexed
    );

    // Update: reprocessed garments (newer processed_at) replacing rows of the full table.
    let updates = (10 * batch).min(opts.rows);
    let mut secs = 0.0;
    let mut done = 0;
    while done < updates {
        let n = batch.min(updates - done);
        // Spread over the table; one record per garment per batch.
        let garments: Vec<Garment> = (done..done + n)
            .map(|i| generator.garment(i * 7 % opts.rows, opts.users, "2026-11-22T11:00:00.000Z"))
            .map(|g| (g.garment_id.clone(), g))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .collect();
        let t = Instant::now();
        sink.upsert(&garments).await.map_err(lance)?;
        secs += t.elapsed().as_secs_f64();
        done += n;
    }
    let rows = table.count_rows(None).await.map_err(lance)?;
    println!(
        "  upsert (update) {:.0} rows/s: {updates} rows into the {rows}-row table in {secs:.1} s",
        updates as f64 / secs
    );
    if rows != opts.rows {
        return Err(Error::Invalid(format!(
            "expected {} rows after the updates, found {rows}",
            opts.rows
        )));
    }
    // Upkeep again so the queries see an indexed, compacted table.
    flashfit_lance::upkeep::run(&table, &cfg)
        .await
        .map_err(lance)?;

    println!("  query latency on {rows} vectors, k = {}:", opts.k);
    let users = opts.users.max(1);
    let k = opts.k.max(1);
    let (_, like_p99) = latency("like (one user, exact, image vectors)", opts.queries, |i| {
        let table = table.clone();
        let user = format!("u-{:05}", (i * 37) % users);
        let garment = format!("g-{:07}", (i * 37) % users + users * (i % 3));
        async move {
            let hits =
                flashfit_lance::search::like(&table, &user, &garment, k, &Filters::default())
                    .await
                    .map_err(lance)?;
            Ok(hits.len())
        }
    })
    .await?;
    let mut probes = Generator::new(dims);
    let text_queries: Vec<Vec<f32>> = (0..opts.queries + 5)
        .map(|i| {
            let c = probes.text_centres[i % CATEGORIES.len()].clone();
            probes.near(&c, 0.5)
        })
        .collect();
    latency(
        "text (one user, exact, text vectors, category filter)",
        opts.queries,
        |i| {
            let table = table.clone();
            let user = format!("u-{:05}", (i * 53) % users);
            let v = text_queries[i].clone();
            let f = Filters {
                category: Some(CATEGORIES[i % CATEGORIES.len()].to_owned()),
                color: None,
            };
            async move {
                let hits = flashfit_lance::search::text(&table, &user, v, k, &f)
                    .await
                    .map_err(lance)?;
                Ok(hits.len())
            }
        },
    )
    .await?;
    let image_queries: Vec<Vec<f32>> = (0..opts.queries + 5)
        .map(|i| {
            let s = probes.image_styles[(i * 7919) % probes.image_styles.len()].clone();
            probes.near(&s, 0.3)
        })
        .collect();
    let ann = |v: Vec<f32>| -> Result<lancedb::query::VectorQuery> {
        Ok(table
            .query()
            .nearest_to(v)
            .map_err(lance)?
            .column("image_vector")
            .distance_type(DistanceType::Cosine)
            .nprobes(opts.nprobes)
            .map_err(lance)?
            .refine_factor(opts.refine)
            .limit(k))
    };
    let (_, ann_p99) = latency(
        &format!(
            "whole table (IVF-PQ, image vectors, nprobes {}, refine ×{})",
            opts.nprobes, opts.refine
        ),
        opts.queries,
        |i| {
            let q = ann(image_queries[i].clone());
            async move { Ok(captions(q?).await?.len()) }
        },
    )
    .await?;
    // Recall of the index against exact search on the same queries, and how many results
    // share the query's style (within a style, neighbours are nearly equidistant, so exact
    // recall understates how useful the answers are).
    let mut found = 0usize;
    let mut same_style = [0usize; 2];
    let checks = opts.queries.min(50);
    for (i, v) in image_queries.iter().take(checks).enumerate() {
        let style = format!(" style-{}", (i * 7919) % probes.image_styles.len());
        let approx = captions(ann(v.clone())?).await?;
        let exact = captions(ann(v.clone())?.bypass_vector_index()).await?;
        let approx_ids: HashSet<&String> = approx.iter().map(|(g, _)| g).collect();
        found += exact.iter().filter(|(g, _)| approx_ids.contains(g)).count();
        for (n, list) in [&approx, &exact].iter().enumerate() {
            same_style[n] += list.iter().filter(|(_, c)| c.ends_with(&style)).count();
        }
    }
    let total = (checks * k) as f64;
    println!(
        "  IVF-PQ recall@{k} vs exact: {:.3}; results of the query's style: {:.3} (exact: {:.3}) over {checks} queries",
        found as f64 / total,
        same_style[0] as f64 / total,
        same_style[1] as f64 / total
    );
    println!(
        "  floor (p99 ≤ 20 ms): per-user like {}, whole-table {}",
        if like_p99 <= 20.0 { "met" } else { "NOT met" },
        if ann_p99 <= 20.0 { "met" } else { "NOT met" },
    );
    Ok(())
}
