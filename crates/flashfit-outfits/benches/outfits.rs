//! `cargo bench -p flashfit-outfits`: recommendation latency p50/p99 for a 500-garment
//! wardrobe with personalisation on (the floor: p99 ≤ 20 ms). Prints figures; the
//! wardrobe is synthetic (every taxonomy category, the attributes stage's palette, formality
//! and seasons as the rule tables give them) and the same on every run.

use std::time::Instant;

use flashfit_config::OutfitsConfig;
use flashfit_outfits::{Item, Preferences, Request, RuleScorer, recommend};
use flashfit_schema::Signal;
use flashfit_schema::taxonomy::CATEGORIES;

const COLOURS: [&str; 14] = [
    "black", "white", "grey", "navy", "blue", "red", "green", "brown", "tan", "beige", "pink",
    "purple", "orange", "yellow",
];
const TAGS: [&str; 6] = [
    "classic",
    "minimalist",
    "streetwear",
    "preppy",
    "sporty",
    "bohemian",
];
const SEASONS: [&str; 4] = ["spring", "summer", "fall", "winter"];

fn wardrobe(n: usize) -> Vec<Item> {
    let mut state: u64 = 0x5eed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|i| {
            let (_, category) = CATEGORIES[(next() % CATEGORIES.len() as u64) as usize];
            let seasons = (0..4)
                .filter(|_| next() % 2 == 0)
                .map(|s| SEASONS[s].to_owned())
                .collect();
            Item {
                garment_id: format!("g-{i:04}"),
                category: category.to_owned(),
                color_primary: Some(COLOURS[(next() % 14) as usize].to_owned()),
                formality: Some((next() % 1000) as f32 / 1000.0),
                seasons,
                style_tags: vec![
                    TAGS[(next() % 6) as usize].to_owned(),
                    TAGS[(next() % 6) as usize].to_owned(),
                ],
                embedding: None,
                model_versions: Vec::new(),
            }
        })
        .collect()
}

fn main() {
    let cfg = OutfitsConfig::default();
    let scorer = RuleScorer::new(&cfg);
    let items = wardrobe(500);
    let mut prefs = Preferences::default();
    for (i, g) in items.iter().enumerate().take(40) {
        let s = Signal::ALL[i % Signal::ALL.len()];
        prefs.apply(s, std::slice::from_ref(g));
    }
    assert!(prefs.feedback_count >= cfg.personalization.min_feedback);
    let requests: Vec<Request> = [None, Some("casual"), Some("work"), Some("formal")]
        .iter()
        .flat_map(|o| {
            [None, Some("summer"), Some("winter")].map(|s| Request {
                k: 5,
                occasion: o.map(str::to_owned),
                season: s.map(str::to_owned),
            })
        })
        .collect();
    for r in requests.iter().take(3) {
        recommend(&items, r, &scorer, Some(&prefs), &cfg).expect("warm-up");
    }
    let n = 1_000;
    let mut ms = Vec::with_capacity(n);
    let mut outfits = 0;
    for i in 0..n {
        let r = &requests[i % requests.len()];
        let t = Instant::now();
        let out = recommend(&items, r, &scorer, Some(&prefs), &cfg).expect("outfits");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        outfits += out.len();
    }
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "outfits: 500-garment wardrobe, personalisation on ({} feedback events), k = 5, beam {}, outerwear {}",
        prefs.feedback_count, cfg.beam, cfg.outerwear
    );
    println!(
        "  {n} requests (12 occasion × season mixes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.1} outfits each",
        p(0.5),
        p(0.99),
        ms[ms.len() - 1],
        outfits as f64 / n as f64
    );
    println!(
        "  floor (p99 ≤ 20 ms): {}",
        if p(0.99) <= 20.0 { "met" } else { "NOT met" }
    );
}
