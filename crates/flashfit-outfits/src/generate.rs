//! Filter → generate → score → rank (seed: "Recommendation pipeline").
//!
//! Candidates come from two templates: top + bottom + footwear, and dress + footwear, each
//! also with one outerwear piece when `[outfits] outerwear` is on. A 500-garment wardrobe has
//! millions of such combinations, so generation is a beam search: all pairs of the first two
//! slots are scored, the best `beam` partial outfits (compatibility + personalisation) are
//! extended by every garment of the next slot, and so on. The final list is ranked by score
//! (ties by garment ids, so equal inputs give equal answers) and picked greedily so that no
//! two returned outfits share more than half their garments while other outfits remain.

use std::collections::HashSet;

use flashfit_config::OutfitsConfig;

use crate::{Breakdown, Error, Item, Outfit, Preferences, Reranker, Scorer, group};

/// What the caller asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub k: usize,
    /// A key of `[outfits.occasions]`: garments outside its formality range are left out.
    pub occasion: Option<String>,
    /// `spring`, `summer`, `fall` or `winter`: garments tagged for other seasons only are left
    /// out.
    pub season: Option<String>,
}

pub const SEASONS: [&str; 4] = ["spring", "summer", "fall", "winter"];

#[derive(Clone)]
struct Partial {
    idx: Vec<usize>,
    score: f64,
    breakdown: Breakdown,
}

/// The user's top `req.k` outfits from `wardrobe`.
pub fn recommend(
    wardrobe: &[Item],
    req: &Request,
    scorer: &dyn Scorer,
    prefs: Option<&Preferences>,
    cfg: &OutfitsConfig,
) -> Result<Vec<Outfit>, Error> {
    recommend_reranked(wardrobe, req, scorer, None, prefs, cfg)
}

/// [`recommend`], with the final candidates' compatibility replaced by `reranker`'s (a
/// learned model): `scorer` still generates the candidates (the beam), the model orders them.
pub fn recommend_reranked(
    wardrobe: &[Item],
    req: &Request,
    scorer: &dyn Scorer,
    reranker: Option<&dyn Reranker>,
    prefs: Option<&Preferences>,
    cfg: &OutfitsConfig,
) -> Result<Vec<Outfit>, Error> {
    if req.k == 0 || req.k > cfg.max_k {
        return Err(Error::BadRequest(format!(
            "k must be between 1 and {}",
            cfg.max_k
        )));
    }
    let range = match &req.occasion {
        None => None,
        Some(o) => Some(*cfg.occasions.get(o).ok_or_else(|| {
            let known: Vec<&str> = cfg.occasions.keys().map(String::as_str).collect();
            Error::BadRequest(format!(
                "unknown occasion `{o}` (one of: {})",
                known.join(", ")
            ))
        })?),
    };
    if let Some(s) = &req.season
        && !SEASONS.contains(&s.as_str())
    {
        return Err(Error::BadRequest(format!(
            "unknown season `{s}` (one of: {})",
            SEASONS.join(", ")
        )));
    }
    // Filter.
    let fits = |g: &Item| {
        let season_ok = req
            .season
            .as_ref()
            .is_none_or(|s| g.seasons.is_empty() || g.seasons.iter().any(|x| x == s));
        let occasion_ok = match (range, g.formality) {
            (Some([lo, hi]), Some(f)) => (lo..=hi).contains(&f),
            _ => true,
        };
        season_ok && occasion_ok
    };
    let items: Vec<Item> = wardrobe.iter().filter(|g| fits(g)).cloned().collect();
    let slot = |name: &str| -> Vec<usize> {
        (0..items.len())
            .filter(|&i| group(&items[i].category) == Some(name))
            .collect()
    };
    let (tops, bottoms, footwear, outerwear, dresses) = (
        slot("tops"),
        slot("bottoms"),
        slot("footwear"),
        slot("outerwear"),
        slot("dresses"),
    );
    // Personalisation per garment, summed and clamped per outfit.
    let min_feedback = cfg.personalization.min_feedback;
    let personal: Vec<f64> = match prefs {
        Some(p) if p.feedback_count >= min_feedback => {
            items.iter().map(|g| p.item_adjustment(g)).collect()
        }
        _ => vec![0.0; items.len()],
    };
    let clamp = cfg.personalization.clamp.abs();
    let prepared = scorer.prepare(&items);
    let score = |idx: Vec<usize>| -> Partial {
        let mut breakdown = prepared.score(&idx);
        let adjustment: f64 = idx.iter().map(|&i| personal[i]).sum();
        breakdown.personalization = adjustment.clamp(-clamp, clamp);
        Partial {
            score: breakdown.compatibility + breakdown.personalization,
            idx,
            breakdown,
        }
    };
    let beam = cfg.beam.max(req.k).max(1);
    let keep = |mut v: Vec<Partial>| -> Vec<Partial> {
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.idx.cmp(&b.idx)));
        v.truncate(beam);
        v
    };
    let extend = |from: &[Partial], slot: &[usize]| -> Vec<Partial> {
        let mut out = Vec::with_capacity(from.len() * slot.len());
        for p in from {
            for &g in slot {
                let mut idx = p.idx.clone();
                idx.push(g);
                out.push(score(idx));
            }
        }
        keep(out)
    };
    let mut finals: Vec<Partial> = Vec::new();
    // top + bottom + footwear (+ outerwear).
    let pairs: Vec<Partial> = tops
        .iter()
        .flat_map(|&t| bottoms.iter().map(move |&b| vec![t, b]))
        .map(&score)
        .collect();
    let three = extend(&keep(pairs), &footwear);
    if cfg.outerwear {
        finals.extend(extend(&three, &outerwear));
    }
    finals.extend(three);
    // dress + footwear (+ outerwear).
    let dressed: Vec<Partial> = dresses
        .iter()
        .flat_map(|&d| footwear.iter().map(move |&f| vec![d, f]))
        .map(&score)
        .collect();
    let dressed = keep(dressed);
    if cfg.outerwear {
        finals.extend(extend(&dressed, &outerwear));
    }
    finals.extend(dressed);
    if let Some(r) = reranker
        && !finals.is_empty()
    {
        let combos: Vec<Vec<usize>> = finals.iter().map(|p| p.idx.clone()).collect();
        let scores = r
            .rerank(&items, &combos)
            .map_err(|e| Error::Model(format!("{}: {e}", r.name())))?;
        if scores.len() != finals.len() {
            return Err(Error::Model(format!(
                "{} scored {} of {} candidates",
                r.name(),
                scores.len(),
                finals.len()
            )));
        }
        for (p, s) in finals.iter_mut().zip(scores) {
            p.breakdown.compatibility = s;
            p.score = s + p.breakdown.personalization;
        }
    }
    // Rank, then pick for variety.
    finals.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| ids(&items, &a.idx).cmp(&ids(&items, &b.idx)))
    });
    let mut picked: Vec<&Partial> = Vec::new();
    let mut rest: Vec<&Partial> = Vec::new();
    for p in &finals {
        if picked.len() == req.k {
            break;
        }
        let set: HashSet<usize> = p.idx.iter().copied().collect();
        let too_close = picked.iter().any(|q| {
            let shared = q.idx.iter().filter(|i| set.contains(i)).count();
            2 * shared > p.idx.len().min(q.idx.len())
        });
        if too_close {
            rest.push(p);
        } else {
            picked.push(p);
        }
    }
    for p in rest {
        if picked.len() == req.k {
            break;
        }
        picked.push(p);
    }
    picked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| ids(&items, &a.idx).cmp(&ids(&items, &b.idx)))
    });
    Ok(picked
        .into_iter()
        .map(|p| Outfit {
            garment_ids: ids(&items, &p.idx),
            unsure: p
                .idx
                .iter()
                .filter(|&&i| flashfit_schema::taxonomy::index(&items[i].category).is_none())
                .map(|&i| items[i].garment_id.clone())
                .collect(),
            score: p.score,
            breakdown: p.breakdown,
        })
        .collect())
}

fn ids(items: &[Item], idx: &[usize]) -> Vec<String> {
    idx.iter().map(|&i| items[i].garment_id.clone()).collect()
}

#[cfg(test)]
mod tests;
