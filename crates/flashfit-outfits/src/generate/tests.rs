use flashfit_schema::Signal;

use super::*;
use crate::RuleScorer;

fn item(id: &str, category: &str, color: &str, formality: f32) -> Item {
    Item {
        garment_id: id.into(),
        category: category.into(),
        color_primary: Some(color.into()),
        formality: Some(formality),
        seasons: Vec::new(),
        style_tags: vec!["classic".into()],
        embedding: None,
        model_versions: Vec::new(),
    }
}

fn wardrobe() -> Vec<Item> {
    vec![
        item("tee", "t_shirt", "white", 0.2),
        item("shirt", "dress_shirt", "white", 0.8),
        item("hoodie", "hoodie", "red", 0.15),
        item("jeans", "jeans", "blue", 0.3),
        item("trousers", "dress_pants", "navy", 0.85),
        item("sneakers", "sneakers", "white", 0.2),
        item("oxfords", "dress_shoes", "black", 0.9),
        item("blazer", "blazer", "navy", 0.85),
        item("dress", "formal_dress", "black", 0.9),
        item("watch", "watch", "grey", 0.6),
    ]
}

fn req(k: usize) -> Request {
    Request {
        k,
        ..Request::default()
    }
}

#[test]
fn the_rules_score_as_the_seed_says() {
    let cfg = OutfitsConfig::default();
    let items = wardrobe();
    let rules = RuleScorer::new(&cfg);
    let p = rules.prepare(&items);
    // white tee + blue jeans + white sneakers: one accent (0.9), formality variance of
    // (0.2, 0.3, 0.2) = 1/450 → 1 − 5/450, t_shirt+jeans listed at 1.0.
    let b = p.score(&[0, 3, 5]);
    assert!((b.color_harmony - 0.9).abs() < 1e-9);
    assert!(
        (b.formality_match - (1.0 - 5.0 / 450.0)).abs() < 1e-6,
        "{b:?}"
    );
    assert!((b.category_combo - 1.0).abs() < 1e-9);
    let want = 0.35 * 0.9 + 0.35 * (1.0 - 5.0 / 450.0) + 0.3;
    assert!((b.compatibility - want).abs() < 1e-6);
    // All neutrals 0.75; red + blue (two accents, not complementary) 0.5; one garment 0.8.
    assert!((p.score(&[1, 4, 6]).color_harmony - 0.75).abs() < 1e-9);
    assert!((p.score(&[2, 3]).color_harmony - 0.5).abs() < 1e-9);
    assert!((p.score(&[2]).color_harmony - 0.8).abs() < 1e-9);
    // Casual hoodie with formal trousers: variance 0.1225 → 1 − 0.6125; unlisted pair: 0.7.
    let b = p.score(&[2, 4]);
    assert!(
        (b.formality_match - (1.0 - 5.0 * 0.1225)).abs() < 1e-6,
        "{b:?}"
    );
    assert!((b.category_combo - 0.7).abs() < 1e-9);
}

#[test]
fn outfits_follow_the_templates_rank_best_first_and_repeat() {
    let cfg = OutfitsConfig::default();
    let rules = RuleScorer::new(&cfg);
    let w = wardrobe();
    let out = recommend(&w, &req(5), &rules, None, &cfg).expect("outfits");
    assert_eq!(out.len(), 5);
    for o in &out {
        let groups: Vec<&str> = o
            .garment_ids
            .iter()
            .map(|id| {
                let g = w.iter().find(|g| &g.garment_id == id).expect("garment");
                group(&g.category).expect("group")
            })
            .collect();
        let ok = matches!(
            groups.as_slice(),
            ["tops", "bottoms", "footwear"]
                | ["tops", "bottoms", "footwear", "outerwear"]
                | ["dresses", "footwear"]
                | ["dresses", "footwear", "outerwear"]
        );
        assert!(ok, "{groups:?}");
        assert!(!o.garment_ids.contains(&"watch".to_string()));
        assert!((o.score - o.breakdown.compatibility).abs() < 1e-12);
    }
    assert!(out.windows(2).all(|p| p[0].score >= p[1].score));
    // The casual set scores best (see the rules test); the formal set with its blazer next.
    assert_eq!(out[0].garment_ids, ["tee", "jeans", "sneakers"], "{out:?}");
    assert_eq!(
        out[1].garment_ids,
        ["shirt", "trousers", "oxfords", "blazer"]
    );
    assert_eq!(
        recommend(&w, &req(5), &rules, None, &cfg).expect("again"),
        out
    );
    assert!(
        recommend(&[], &req(3), &rules, None, &cfg)
            .expect("empty")
            .is_empty()
    );
}

#[test]
fn occasion_and_season_filter_and_bad_requests_are_errors() {
    let cfg = OutfitsConfig::default();
    let rules = RuleScorer::new(&cfg);
    let mut w = wardrobe();
    let formal = Request {
        k: 10,
        occasion: Some("formal".into()),
        season: None,
    };
    for o in recommend(&w, &formal, &rules, None, &cfg).expect("formal") {
        for id in &o.garment_ids {
            let f = w
                .iter()
                .find(|g| &g.garment_id == id)
                .and_then(|g| g.formality);
            assert!(f.is_some_and(|f| f >= 0.65), "{id} in a formal outfit");
        }
    }
    // Summer: the winter-only blazer goes; untagged garments stay.
    w[7].seasons = vec!["fall".into(), "winter".into()];
    let summer = Request {
        k: 10,
        occasion: None,
        season: Some("summer".into()),
    };
    let out = recommend(&w, &summer, &rules, None, &cfg).expect("summer");
    assert!(!out.is_empty());
    assert!(
        out.iter()
            .all(|o| !o.garment_ids.contains(&"blazer".to_string()))
    );
    for bad in [
        Request {
            k: 0,
            ..Request::default()
        },
        Request {
            k: cfg.max_k + 1,
            ..Request::default()
        },
        Request {
            k: 1,
            occasion: Some("gala".into()),
            season: None,
        },
        Request {
            k: 1,
            occasion: None,
            season: Some("monsoon".into()),
        },
    ] {
        assert!(
            matches!(
                recommend(&w, &bad, &rules, None, &cfg),
                Err(Error::BadRequest(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn personalisation_counts_after_ten_events_and_is_clamped() {
    let cfg = OutfitsConfig::default();
    let rules = RuleScorer::new(&cfg);
    let mut w = wardrobe();
    w[2].style_tags = vec!["streetwear".into()];
    let base = recommend(&w, &req(50), &rules, None, &cfg).expect("base");
    let hoodie_rank = |out: &[Outfit]| {
        out.iter()
            .position(|o| o.garment_ids.contains(&"hoodie".to_string()))
            .expect("a hoodie outfit")
    };
    // Nine "wear"s of the red hoodie: not enough feedback yet, nothing changes.
    let mut p = Preferences::default();
    let hoodie = w[2].clone();
    for _ in 0..9 {
        p.apply(Signal::Wear, std::slice::from_ref(&hoodie));
    }
    assert_eq!(
        recommend(&w, &req(50), &rules, Some(&p), &cfg).expect("9"),
        base
    );
    // The tenth: hoodie outfits rise; the adjustment is clamped at +0.3.
    p.apply(Signal::Wear, std::slice::from_ref(&hoodie));
    assert!((p.category["hoodie"] - 10.0 * 2.0 * 0.1).abs() < 1e-9);
    let after = recommend(&w, &req(50), &rules, Some(&p), &cfg).expect("10");
    assert!(hoodie_rank(&after) < hoodie_rank(&base), "{after:?}");
    let top = &after[hoodie_rank(&after)];
    assert!(
        (top.breakdown.personalization - 0.3).abs() < 1e-12,
        "{top:?}"
    );
    assert!((top.score - top.breakdown.compatibility - 0.3).abs() < 1e-12);
    // Outfits without the hoodie are not adjusted.
    let other = after
        .iter()
        .find(|o| !o.garment_ids.contains(&"hoodie".to_string()))
        .expect("another outfit");
    assert_eq!(other.breakdown.personalization, 0.0);
}

/// Prefers outfits with more garments of the given colour (a stand-in for a learned model).
struct Likes(&'static str);

impl crate::Reranker for Likes {
    fn name(&self) -> &str {
        "likes"
    }
    fn rerank(&self, items: &[Item], candidates: &[Vec<usize>]) -> Result<Vec<f64>, String> {
        Ok(candidates
            .iter()
            .map(|c| {
                c.iter()
                    .filter(|&&i| items[i].color_primary.as_deref() == Some(self.0))
                    .count() as f64
            })
            .collect())
    }
}

struct Broken;

impl crate::Reranker for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn rerank(&self, _: &[Item], _: &[Vec<usize>]) -> Result<Vec<f64>, String> {
        Ok(vec![1.0])
    }
}

#[test]
fn a_reranker_orders_the_candidates_the_rules_generated() {
    let cfg = OutfitsConfig::default();
    let rules = RuleScorer::new(&cfg);
    let w = wardrobe();
    let out = crate::recommend_reranked(&w, &req(3), &rules, Some(&Likes("navy")), None, &cfg)
        .expect("reranked");
    // trousers + blazer are the navy pieces: the model puts them first.
    assert!(
        out[0].garment_ids.contains(&"trousers".to_string()),
        "{out:?}"
    );
    assert!(
        out[0].garment_ids.contains(&"blazer".to_string()),
        "{out:?}"
    );
    assert_eq!(out[0].breakdown.compatibility, 2.0);
    // Rule parts stay in the breakdown.
    assert!(out[0].breakdown.color_harmony > 0.0);
    let err = crate::recommend_reranked(&w, &req(3), &rules, Some(&Broken), None, &cfg)
        .expect_err("wrong length");
    assert!(matches!(err, Error::Model(_)), "{err}");
}

/// An item the classifier was unsure of still takes part when its group is known, and is
/// listed as unsure; an `unknown` one cannot be placed and is left out.
#[test]
fn unsure_items_join_outfits_by_their_group() {
    let cfg = OutfitsConfig::default();
    let rules = RuleScorer::new(&cfg);
    let w = vec![
        item("tee", "t_shirt", "white", 0.2),
        item("jeans", "jeans", "blue", 0.3),
        item("shoes", "footwear", "white", 0.2),
        item("thing", "unknown", "grey", 0.5),
    ];
    let out = recommend(&w, &req(5), &rules, None, &cfg).expect("outfits");
    assert!(!out.is_empty());
    assert!(
        out.iter()
            .all(|o| !o.garment_ids.iter().any(|g| g == "thing")),
        "{out:?}"
    );
    let with_shoes: Vec<_> = out
        .iter()
        .filter(|o| o.garment_ids.iter().any(|g| g == "shoes"))
        .collect();
    assert!(!with_shoes.is_empty(), "{out:?}");
    for o in &out {
        let has = o.garment_ids.iter().any(|g| g == "shoes");
        assert_eq!(
            o.unsure,
            if has {
                vec!["shoes".to_owned()]
            } else {
                vec![]
            }
        );
    }
}
