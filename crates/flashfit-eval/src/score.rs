//! Scores predictions against labels (pure: no models, tested on hand-made cases).
//!
//! - **Is it clothing**: a photo counts as "said not clothing" when its upload was rejected
//!   `not_clothing`; uploads rejected or failed for another reason (`too_small`, …) are counted
//!   apart and in neither rate.
//! - **Which garment**: a product shot's one labelled item is the upload's first garment; an
//!   outfit's labelled items are matched to its garments by box (greedy by IoU, at least
//!   [`MATCH_IOU`]). Matched pairs are scored:
//!   - group accuracy: of the answers that name a group (a category or a group), the share
//!     whose group the label accepts; abstention: the share answered `unknown`;
//!   - category precision: of the answers that name a category, the share the label confirms
//!     (a label naming only a group cannot confirm a category: such answers are judged only
//!     when their group is wrong, which makes them wrong);
//!   - per group and per category: precision, recall and abstention;
//!   - colour: the primary colour is one the label accepts.
//! - **Items per person photo**: garments per processed outfit photo, and the share of the
//!   visible tops, bottoms and shoes of full-body photos found (matched by box).

use std::collections::BTreeMap;

use flashfit_schema::record::Level;
use flashfit_schema::{Reason, Status, taxonomy};
use serde::Serialize;

use crate::labels::{Item, Kind, Photo, Region};
use crate::run::{Predicted, Prediction};

/// Intersection over union a labelled box needs with a garment's box to be that garment.
pub const MATCH_IOU: f32 = 0.5;

/// `num` of `den`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ratio {
    pub num: usize,
    pub den: usize,
}

impl Ratio {
    pub fn value(self) -> Option<f64> {
        (self.den > 0).then(|| self.num as f64 / self.den as f64)
    }

    fn add(&mut self, hit: bool) {
        self.den += 1;
        self.num += usize::from(hit);
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value() {
            Some(v) => write!(f, "{:5.1}% ({}/{})", v * 100.0, self.num, self.den),
            None => write!(f, "    - (0/0)"),
        }
    }
}

/// Rows: labelled clothing / not; columns: kept / rejected not_clothing / ended otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub clothing_kept: usize,
    pub clothing_rejected: usize,
    pub clothing_other: usize,
    pub not_clothing_kept: usize,
    pub not_clothing_rejected: usize,
    pub not_clothing_other: usize,
}

impl Confusion {
    /// Share of non-clothing photos said not clothing (of those that reached the decision).
    pub fn not_clothing_rejected_rate(&self) -> Ratio {
        Ratio {
            num: self.not_clothing_rejected,
            den: self.not_clothing_rejected + self.not_clothing_kept,
        }
    }

    /// Share of clothing photos wrongly said not clothing.
    pub fn clothing_rejected_rate(&self) -> Ratio {
        Ratio {
            num: self.clothing_rejected,
            den: self.clothing_rejected + self.clothing_kept,
        }
    }
}

/// Precision, recall and abstention of one group or category.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassScore {
    pub name: String,
    /// Answers naming it that the label confirms / all answers naming it that can be judged.
    pub precision: Ratio,
    /// Items labelled it that were answered it / items labelled it.
    pub recall: Ratio,
    /// Items labelled it answered less specifically (group or unknown) / items labelled it.
    pub abstention: Ratio,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub photos: usize,
    pub is_clothing: Confusion,
    /// Group named and right / answers naming a group.
    pub group_accuracy: Ratio,
    /// Answers `unknown` / matched items.
    pub group_abstention: Ratio,
    /// Category named and right / category answers that can be judged.
    pub category_precision: Ratio,
    /// Answers less specific than a category / matched items whose label names a category.
    pub category_abstention: Ratio,
    pub groups: Vec<ClassScore>,
    pub categories: Vec<ClassScore>,
    /// Primary colour accepted / matched items with a colour label.
    pub colour_accuracy: Ratio,
    /// Garments per processed outfit photo, one entry per such photo (file, garments, labelled).
    pub items_per_person_photo: Vec<(String, usize, usize)>,
    /// Visible tops, bottoms and shoes of full-body photos found as garments.
    pub worn_found: Ratio,
    /// Labelled outfit items of any region found as garments.
    pub outfit_items_found: Ratio,
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (the detectors' NMS measure).
pub use flashfit_vision::detect::iou;

/// Pairs of (labelled item index, garment index): a product shot's one item with the first
/// garment; an outfit's items with garments by box, greedily by IoU (≥ [`MATCH_IOU`]).
pub fn matches(photo: &Photo, garments: &[Predicted]) -> Vec<(usize, usize)> {
    if photo.kind == Kind::Garment || photo.items.iter().all(|i| i.bbox.is_none()) {
        return (!photo.items.is_empty() && !garments.is_empty())
            .then_some((0, 0))
            .into_iter()
            .collect();
    }
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, item) in photo.items.iter().enumerate() {
        let Some(b) = item.bbox else { continue };
        for (j, g) in garments.iter().enumerate() {
            let v = iou(b, g.bbox);
            if v >= MATCH_IOU {
                pairs.push((v, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_i, mut used_j) = (vec![false; photo.items.len()], vec![false; garments.len()]);
    let mut out = Vec::new();
    for (_, i, j) in pairs {
        if !used_i[i] && !used_j[j] {
            used_i[i] = true;
            used_j[j] = true;
            out.push((i, j));
        }
    }
    out.sort_unstable();
    out
}

#[derive(Default)]
struct Tally {
    precision: Ratio,
    recall: Ratio,
    abstention: Ratio,
}

fn scores(map: BTreeMap<String, Tally>) -> Vec<ClassScore> {
    map.into_iter()
        .map(|(name, t)| ClassScore {
            name,
            precision: t.precision,
            recall: t.recall,
            abstention: t.abstention,
        })
        .collect()
}

fn answered_group(p: &Predicted) -> Option<&str> {
    match p.level {
        Level::Unknown => None,
        _ => p.group.as_deref().or_else(|| taxonomy::group_of(&p.label)),
    }
}

fn score_item(
    item: &Item,
    p: &Predicted,
    r: &mut Report,
    groups: &mut BTreeMap<String, Tally>,
    cats: &mut BTreeMap<String, Tally>,
) {
    let group = answered_group(p);
    let group_right = group.is_some_and(|g| item.group.accepts(g));
    let main = item.group.first().to_owned();
    r.group_abstention.add(group.is_none());
    let t = groups.entry(main.clone()).or_default();
    t.recall.add(group_right);
    t.abstention.add(group.is_none());
    if let Some(g) = group {
        r.group_accuracy.add(group_right);
        groups
            .entry(g.to_owned())
            .or_default()
            .precision
            .add(group_right);
    }
    let fine = (p.level == Level::Category).then_some(p.label.as_str());
    if let Some(c) = &item.category {
        r.category_abstention.add(fine.is_none());
        let t = cats.entry(c.clone()).or_default();
        t.recall.add(fine == Some(c.as_str()));
        t.abstention.add(fine.is_none());
    }
    if let Some(f) = fine {
        // Judged when the label names a category, or when the answer's group is wrong.
        let verdict = match &item.category {
            Some(c) => Some(c == f),
            None => (!group_right).then_some(false),
        };
        if let Some(right) = verdict {
            r.category_precision.add(right);
            cats.entry(f.to_owned()).or_default().precision.add(right);
        }
    }
    if let Some(accepted) = &item.colour {
        r.colour_accuracy
            .add(p.colour.as_deref().is_some_and(|c| accepted.accepts(c)));
    }
}

/// Scores every photo's prediction against its labels.
pub fn score(results: &[(Photo, Prediction)]) -> Report {
    let mut r = Report {
        photos: results.len(),
        ..Report::default()
    };
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut cats: BTreeMap<String, Tally> = BTreeMap::new();
    for (photo, pred) in results {
        let not_clothing =
            pred.status == Some(Status::Rejected) && pred.reasons.contains(&Reason::NotClothing);
        // An outfit upload that became its garments was kept as much as a processed one.
        let kept = matches!(pred.status, Some(Status::Processed | Status::Split));
        let c = &mut r.is_clothing;
        match (photo.clothing, not_clothing, kept) {
            (true, true, _) => c.clothing_rejected += 1,
            (true, false, true) => c.clothing_kept += 1,
            (true, false, false) => c.clothing_other += 1,
            (false, true, _) => c.not_clothing_rejected += 1,
            (false, false, true) => c.not_clothing_kept += 1,
            (false, false, false) => c.not_clothing_other += 1,
        }
        if !photo.clothing || !kept {
            continue;
        }
        let pairs = matches(photo, &pred.items);
        for &(i, j) in &pairs {
            score_item(
                &photo.items[i],
                &pred.items[j],
                &mut r,
                &mut groups,
                &mut cats,
            );
        }
        if photo.kind == Kind::Outfit {
            r.items_per_person_photo.push((
                photo.file.clone(),
                pred.items.len(),
                photo.items.len(),
            ));
            for (i, item) in photo.items.iter().enumerate() {
                let found = pairs.iter().any(|&(k, _)| k == i);
                r.outfit_items_found.add(found);
                if photo.full_body
                    && matches!(item.region, Region::Top | Region::Bottom | Region::Footwear)
                {
                    r.worn_found.add(found);
                }
            }
        }
    }
    r.groups = scores(groups);
    r.categories = scores(cats);
    r
}

impl Report {
    /// Mean garments per processed outfit photo.
    pub fn mean_items_per_person_photo(&self) -> Option<f64> {
        let n = self.items_per_person_photo.len();
        (n > 0).then(|| {
            self.items_per_person_photo
                .iter()
                .map(|(_, g, _)| *g as f64)
                .sum::<f64>()
                / n as f64
        })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.is_clothing;
        writeln!(f, "{} photos", self.photos)?;
        writeln!(
            f,
            "is clothing        kept  rejected not_clothing  ended otherwise"
        )?;
        writeln!(
            f,
            "  clothing      {:>6}  {:>23}  {:>15}",
            c.clothing_kept, c.clothing_rejected, c.clothing_other
        )?;
        writeln!(
            f,
            "  not clothing  {:>6}  {:>23}  {:>15}",
            c.not_clothing_kept, c.not_clothing_rejected, c.not_clothing_other
        )?;
        writeln!(
            f,
            "  non-clothing rejected   {}",
            c.not_clothing_rejected_rate()
        )?;
        writeln!(
            f,
            "  clothing rejected       {}",
            c.clothing_rejected_rate()
        )?;
        writeln!(f, "taxonomy (matched garments)")?;
        writeln!(f, "  group accuracy          {}", self.group_accuracy)?;
        writeln!(f, "  group abstention        {}", self.group_abstention)?;
        writeln!(f, "  category precision      {}", self.category_precision)?;
        writeln!(f, "  category abstention     {}", self.category_abstention)?;
        writeln!(f, "  colour accuracy         {}", self.colour_accuracy)?;
        for (title, rows) in [("group", &self.groups), ("category", &self.categories)] {
            writeln!(
                f,
                "{title:<14} {:>18} {:>18} {:>18}",
                "precision", "recall", "abstention"
            )?;
            for s in rows {
                writeln!(
                    f,
                    "  {:<12} {:>18} {:>18} {:>18}",
                    s.name,
                    s.precision.to_string(),
                    s.recall.to_string(),
                    s.abstention.to_string()
                )?;
            }
        }
        writeln!(f, "people (outfit photos)")?;
        match self.mean_items_per_person_photo() {
            Some(m) => writeln!(f, "  garments per photo      {m:.2}")?,
            None => writeln!(f, "  garments per photo      -")?,
        }
        for (file, got, labelled) in &self.items_per_person_photo {
            writeln!(f, "    {file:<28} {got} of {labelled} labelled")?;
        }
        writeln!(
            f,
            "  worn items found (full body: tops, bottoms, shoes)  {}",
            self.worn_found
        )?;
        writeln!(
            f,
            "  outfit items found (any region)                     {}",
            self.outfit_items_found
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::OneOrMany;

    fn item(region: Region, bbox: Option<[f32; 4]>, group: &str, cat: Option<&str>) -> Item {
        Item {
            region,
            bbox,
            group: OneOrMany::One(group.into()),
            category: cat.map(str::to_owned),
            colour: Some(OneOrMany::One("red".into())),
        }
    }

    fn photo(kind: Kind, clothing: bool, items: Vec<Item>) -> Photo {
        Photo {
            file: "p.jpg".into(),
            source: "s".into(),
            licence: "l".into(),
            clothing,
            kind,
            full_body: true,
            transform: None,
            items,
        }
    }

    fn garment(bbox: [f32; 4], label: &str, level: Level, colour: &str) -> Predicted {
        Predicted {
            bbox,
            label: label.into(),
            group: taxonomy::group_of(label).map(str::to_owned),
            level,
            best: None,
            confidence: 0.5,
            colour: Some(colour.into()),
            rgb: None,
        }
    }

    fn done(items: Vec<Predicted>) -> Prediction {
        Prediction {
            status: Some(Status::Processed),
            reasons: vec![],
            message: None,
            is_clothing: Some(0.9),
            evidence: None,
            detections: vec![],
            items,
        }
    }

    fn rejected(reason: Reason) -> Prediction {
        Prediction {
            status: Some(Status::Rejected),
            reasons: vec![reason],
            items: vec![],
            ..done(vec![])
        }
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]), 0.0);
        let v = iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]);
        assert!((v - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn the_clothing_confusion_counts_only_not_clothing_as_said_not_clothing() {
        let results = vec![
            (
                photo(Kind::Garment, false, vec![]),
                rejected(Reason::NotClothing),
            ),
            (photo(Kind::Garment, false, vec![]), done(vec![])),
            (
                photo(Kind::Garment, false, vec![]),
                rejected(Reason::TooSmall),
            ),
            (
                photo(Kind::Garment, true, vec![]),
                rejected(Reason::NotClothing),
            ),
            (photo(Kind::Garment, true, vec![]), done(vec![])),
            (photo(Kind::Garment, true, vec![]), done(vec![])),
        ];
        let r = score(&results);
        let c = r.is_clothing;
        assert_eq!(
            (
                c.not_clothing_rejected,
                c.not_clothing_kept,
                c.not_clothing_other
            ),
            (1, 1, 1)
        );
        assert_eq!((c.clothing_rejected, c.clothing_kept), (1, 2));
        assert_eq!(c.not_clothing_rejected_rate().value(), Some(0.5));
        assert_eq!(c.clothing_rejected_rate().num, 1);
    }

    #[test]
    fn taxonomy_scores_reward_right_answers_and_count_abstention() {
        let results = vec![
            // Right category.
            (
                photo(
                    Kind::Garment,
                    true,
                    vec![item(Region::Whole, None, "bottoms", Some("jeans"))],
                ),
                done(vec![garment([0.0; 4], "jeans", Level::Category, "red")]),
            ),
            // Unsure: right group.
            (
                photo(
                    Kind::Garment,
                    true,
                    vec![item(Region::Whole, None, "bottoms", Some("jeans"))],
                ),
                done(vec![garment([0.0; 4], "bottoms", Level::Group, "blue")]),
            ),
            // Confidently wrong.
            (
                photo(
                    Kind::Garment,
                    true,
                    vec![item(Region::Whole, None, "tops", None)],
                ),
                done(vec![garment(
                    [0.0; 4],
                    "maxi_dress",
                    Level::Category,
                    "red",
                )]),
            ),
            // A category the label cannot judge (group right).
            (
                photo(
                    Kind::Garment,
                    true,
                    vec![item(Region::Whole, None, "tops", None)],
                ),
                done(vec![garment([0.0; 4], "t_shirt", Level::Category, "red")]),
            ),
            // Unknown.
            (
                photo(
                    Kind::Garment,
                    true,
                    vec![item(Region::Whole, None, "tops", None)],
                ),
                done(vec![garment([0.0; 4], "unknown", Level::Unknown, "red")]),
            ),
        ];
        let r = score(&results);
        assert_eq!(r.group_accuracy, Ratio { num: 3, den: 4 });
        assert_eq!(r.group_abstention, Ratio { num: 1, den: 5 });
        assert_eq!(r.category_precision, Ratio { num: 1, den: 2 });
        assert_eq!(r.category_abstention, Ratio { num: 1, den: 2 });
        assert_eq!(r.colour_accuracy, Ratio { num: 4, den: 5 });
        let jeans = r
            .categories
            .iter()
            .find(|c| c.name == "jeans")
            .expect("jeans");
        assert_eq!(
            (jeans.recall, jeans.abstention),
            (Ratio { num: 1, den: 2 }, Ratio { num: 1, den: 2 })
        );
        let dress = r
            .categories
            .iter()
            .find(|c| c.name == "maxi_dress")
            .expect("dress");
        assert_eq!(dress.precision, Ratio { num: 0, den: 1 });
    }

    #[test]
    fn outfit_items_match_by_box() {
        let p = photo(
            Kind::Outfit,
            true,
            vec![
                item(Region::Top, Some([0.0, 0.0, 100.0, 100.0]), "tops", None),
                item(
                    Region::Bottom,
                    Some([0.0, 100.0, 100.0, 200.0]),
                    "bottoms",
                    None,
                ),
                item(
                    Region::Footwear,
                    Some([0.0, 200.0, 100.0, 230.0]),
                    "footwear",
                    None,
                ),
            ],
        );
        // One garment: the whole person (IoU < 0.5 with each item).
        let whole = done(vec![garment(
            [0.0, 0.0, 100.0, 230.0],
            "coat",
            Level::Category,
            "red",
        )]);
        assert_eq!(matches(&p, &whole.items), vec![]);
        let split = done(vec![
            garment([0.0, 105.0, 100.0, 200.0], "jeans", Level::Category, "red"),
            garment([5.0, 0.0, 100.0, 95.0], "tops", Level::Group, "red"),
        ]);
        assert_eq!(matches(&p, &split.items), vec![(0, 1), (1, 0)]);
        let r = score(&[(p.clone(), whole), (p, split)]);
        assert_eq!(r.worn_found, Ratio { num: 2, den: 6 });
        assert_eq!(r.mean_items_per_person_photo(), Some(1.5));
    }
}
