//! The attributes stage: colours (k-means over garment pixels: the person mask for worn
//! garments, the border-colour heuristic for flat-lay photos), pattern from texture measures,
//! and fit, formality, seasons and style tags from the rule tables in config
//! (`[attributes]`; defaults in `crates/flashfit-config/src/attributes.toml`).

use flashfit_config::{AttributesConfig, PatternRules};
use flashfit_models::mask::PersonMask;
use flashfit_models::tagger::{Tagger, Tags as ModelTags};
use flashfit_schema::GarmentRecord;
use flashfit_schema::record::{Attributes as Record, ColorShare, DetectionSource};
use flashfit_schema::taxonomy;
use image::RgbImage;

use crate::colour::{
    ColourConfig, ColourShare, GarmentPixels, extract_from, garment_pixels_of, shrink_region,
    without_skin,
};
use crate::enrich::{EnrichStage, Enricher, record_bbox, region};

pub type AttributesStage = EnrichStage<Attributes>;

/// Name and version of the rule tables, recorded in `models`.
pub const RULES_NAME: &str = "flashfit-attribute-rules";
pub const RULES_VERSION: &str = "1";

pub struct Attributes {
    pub config: AttributesConfig,
    /// The person/background model; `None` uses the border heuristic for every photo.
    pub mask: Option<PersonMask>,
    /// A trained attribute tagger (`[attributes] model`): its outputs replace the rules'.
    pub tagger: Option<Tagger>,
}

/// Texture measures of the garment pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Texture {
    /// Share of garment pixels on an edge.
    pub edge_density: f32,
    /// Share of edge energy along the dominant axis (0.5 = none dominates).
    pub orientation: f32,
    /// Share of edge pixels whose gradient lies near an axis.
    pub axis_aligned: f32,
    /// Share of edge pixels in the middle half of the crop.
    pub centre_share: f32,
}

/// Sobel texture measures over the masked thumbnail.
pub fn texture(gp: &GarmentPixels, edge_magnitude: f32) -> Texture {
    let (w, h) = gp.img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let grey: Vec<f32> = gp
        .img
        .pixels()
        .map(|p| 0.299 * f32::from(p.0[0]) + 0.587 * f32::from(p.0[1]) + 0.114 * f32::from(p.0[2]))
        .collect();
    let (mut garment, mut edges, mut centre, mut aligned) = (0usize, 0usize, 0usize, 0usize);
    let (mut ex, mut ey) = (0f32, 0f32);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            // Only pixels whose whole 3x3 neighbourhood is garment: the outline is not texture.
            if !(y - 1..=y + 1).all(|yy| (x - 1..=x + 1).all(|xx| gp.mask[yy * w + xx])) {
                continue;
            }
            garment += 1;
            let g = |dx: isize, dy: isize| {
                grey[(y as isize + dy) as usize * w + (x as isize + dx) as usize]
            };
            let gx = (g(1, -1) + 2.0 * g(1, 0) + g(1, 1)) - (g(-1, -1) + 2.0 * g(-1, 0) + g(-1, 1));
            let gy = (g(-1, 1) + 2.0 * g(0, 1) + g(1, 1)) - (g(-1, -1) + 2.0 * g(0, -1) + g(1, -1));
            if (gx * gx + gy * gy).sqrt() <= edge_magnitude {
                continue;
            }
            edges += 1;
            ex += gx.abs();
            ey += gy.abs();
            if gx.abs() > 3.0 * gy.abs() || gy.abs() > 3.0 * gx.abs() {
                aligned += 1;
            }
            if (w / 4..w - w / 4).contains(&x) && (h / 4..h - h / 4).contains(&y) {
                centre += 1;
            }
        }
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
    Texture {
        edge_density: share(edges, garment),
        orientation: if ex + ey > 0.0 {
            ex.max(ey) / (ex + ey)
        } else {
            0.5
        },
        axis_aligned: share(aligned, edges),
        centre_share: share(centre, edges),
    }
}

/// The pattern the rules give for a texture and the garment's colours.
pub fn pattern(t: &Texture, colours: &[ColourShare], r: &PatternRules) -> &'static str {
    let significant = colours.iter().filter(|c| c.percentage >= 0.10).count();
    if t.edge_density < r.solid_max_edge_density {
        "solid"
    } else if t.orientation >= r.striped_min_orientation {
        "striped"
    } else if t.centre_share >= r.graphic_min_centre_share {
        "graphic"
    } else if t.axis_aligned >= r.grid_min_axis_aligned {
        if significant <= r.checkered_max_colours {
            "checkered"
        } else {
            "plaid"
        }
    } else if significant >= r.floral_min_colours && t.edge_density >= r.busy_min_edge_density {
        "floral"
    } else {
        "abstract"
    }
}

/// Everything the attributes stage adds for one garment.
#[derive(Debug, Clone)]
pub struct Tags {
    pub colours: Vec<ColourShare>,
    pub pattern: String,
    pub fit: String,
    pub formality: f32,
    pub seasons: Vec<String>,
    pub style_tags: Vec<String>,
    /// `person` (mask model) or `border` (flat-lay heuristic).
    pub mask: &'static str,
}

/// Applies the rule tables to a garment of `category` with these colours and pattern.
pub fn rules(
    c: &AttributesConfig,
    category: &str,
    colours: Vec<ColourShare>,
    pattern: &'static str,
    mask: &'static str,
) -> Tags {
    let group = taxonomy::group(category).unwrap_or("");
    let primary = colours.first().map_or("unknown", |c| c.name);
    let base = c
        .formality
        .category
        .get(category)
        .or_else(|| c.formality.group.get(group))
        .copied()
        .unwrap_or(0.5);
    let formality =
        (base + c.formality.colour.get(primary).copied().unwrap_or(0.0)).clamp(0.0, 1.0);
    let formality = (formality * 100.0).round() / 100.0;
    let fit = c
        .fit
        .get(category)
        .cloned()
        .unwrap_or_else(|| "regular".into());
    let seasons = c.seasons.get(category).cloned().unwrap_or_else(|| {
        ["spring", "summer", "fall", "winter"]
            .map(String::from)
            .to_vec()
    });
    let style_tags = style_tags(c, category, &colours, pattern, formality);
    Tags {
        colours,
        pattern: pattern.to_owned(),
        fit,
        formality,
        seasons,
        style_tags,
        mask,
    }
}

/// The style tags whose every condition holds.
fn style_tags(
    c: &AttributesConfig,
    category: &str,
    colours: &[ColourShare],
    pattern: &str,
    formality: f32,
) -> Vec<String> {
    let primary = colours.first().map_or("unknown", |c| c.name);
    c.style
        .iter()
        .filter(|s| {
            (s.categories.is_empty() || s.categories.iter().any(|k| k == category))
                && (s.colours.is_empty() || s.colours.iter().any(|k| k == primary))
                && (s.patterns.is_empty() || s.patterns.iter().any(|k| k == pattern))
                && s.min_formality.is_none_or(|m| formality >= m)
                && s.max_formality.is_none_or(|m| formality <= m)
        })
        .map(|s| s.tag.clone())
        .collect()
}

/// A worn garment's skin-toned pixels are dropped when they are less than this share of what the
/// person mask kept (more, and the garment itself is skin-coloured).
const SKIN_MAX_SHARE: f32 = 0.7;

/// One garment waiting for the attributes stage's blocking half.
pub struct Pending {
    category: String,
    /// The garment's box shrunk to `max_side` (what the colours and texture are measured on).
    small: RgbImage,
    /// The whole photo and the crop box, when the garment is worn and the mask model is on.
    worn: Option<(RgbImage, [f64; 4])>,
    /// Whether the wearer's skin is dropped from a worn garment's pixels: not for footwear
    /// (bare feet are rare, tan and brown leather common).
    skinless: bool,
    /// The tagger's input for the crop, when a tagger is configured.
    tagger_input: Option<Vec<f32>>,
}

/// Lets a trained tagger's answers replace the rules' (colours stay measured), then re-derives
/// style tags from the rules when the tagger has no style output.
fn overlay(c: &AttributesConfig, category: &str, mut t: Tags, m: ModelTags) -> Tags {
    if let Some(p) = m.pattern {
        t.pattern = p;
    }
    if let Some(f) = m.fit {
        t.fit = f;
    }
    if let Some(f) = m.formality {
        t.formality = (f * 100.0).round() / 100.0;
    }
    if let Some(s) = m.seasons {
        t.seasons = s;
    }
    t.style_tags = match m.style {
        Some(s) => s,
        None => style_tags(c, category, &t.colours, &t.pattern, t.formality),
    };
    t
}

impl Attributes {
    fn colour_config(&self) -> ColourConfig {
        ColourConfig {
            k: self.config.k,
            background_delta_e: self.config.background_delta_e,
            max_side: self.config.max_side,
        }
    }

    /// Colours, pattern and rules for one garment (blocking).
    pub fn tag(&self, p: Pending) -> Result<Tags, String> {
        let cfg = self.colour_config();
        let (gp, mask) = match (&p.worn, &self.mask) {
            (Some((full, b)), Some(model)) => {
                let grid = model.mask(full).map_err(|e| e.to_string())?;
                let (fw, fh) = full.dimensions();
                let t = self.config.mask_threshold;
                let keep = |rx: f32, ry: f32| {
                    let x = (b[0] + f64::from(rx) * (b[2] - b[0])) as u32;
                    let y = (b[1] + f64::from(ry) * (b[3] - b[1])) as u32;
                    grid.at(x.min(fw - 1), y.min(fh - 1), fw, fh) >= t
                };
                let gp = garment_pixels_of(p.small, &cfg, Some(&keep));
                let gp = if p.skinless {
                    without_skin(gp, SKIN_MAX_SHARE)
                } else {
                    gp
                };
                (gp, "person")
            }
            _ => (garment_pixels_of(p.small, &cfg, None), "border"),
        };
        // A mask that kept (almost) nothing: fall back to the whole crop rather than no colour.
        let gp = if gp.count() < 20 {
            let n = gp.mask.len();
            GarmentPixels {
                img: gp.img,
                mask: vec![true; n],
            }
        } else {
            gp
        };
        let colours = extract_from(&gp, self.config.k);
        let t = texture(&gp, self.config.pattern.edge_magnitude);
        let pattern = pattern(&t, &colours, &self.config.pattern);
        Ok(rules(&self.config, &p.category, colours, pattern, mask))
    }

    /// Rules for every garment of a batch, then the tagger's answers on top (one batched call).
    pub fn tag_batch(&self, batch: Vec<Pending>) -> Result<Vec<Tags>, String> {
        let mut inputs = Vec::new();
        let mut categories = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        for mut p in batch {
            if let Some(x) = p.tagger_input.take() {
                inputs.push(x);
            }
            categories.push(p.category.clone());
            pending.push(p);
        }
        // Colours, texture and the person mask per garment, `jobs` garments at once.
        let tags = flashfit_models::par_map(pending, self.config.jobs, |p| self.tag(p))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let Some(tagger) = &self.tagger else {
            return Ok(tags);
        };
        let answers = tagger.infer(&inputs).map_err(|e| e.to_string())?;
        if answers.len() != tags.len() {
            return Err("tagger returned a different number of answers".into());
        }
        Ok(tags
            .into_iter()
            .zip(answers)
            .zip(categories)
            .map(|((t, m), category)| overlay(&self.config, &category, t, m))
            .collect())
    }
}

impl Enricher for Attributes {
    const STAGE: &'static str = "attributes";
    type Prepared = Pending;
    type Output = Tags;

    /// Twice the largest side its pixels are resized to: the colour thumbnail, the tagger's
    /// input and the person mask (which reads the whole photo, never smaller than the box).
    fn min_region_side(&self) -> u32 {
        let tagger = self.tagger.as_ref().map_or(0, Tagger::source_side);
        let mask = if self.mask.is_some() && self.config.person_mask {
            PersonMask::SIDE as u32
        } else {
            0
        };
        2 * self.config.max_side.max(tagger).max(mask)
    }

    fn prepare(&self, record: &GarmentRecord, img: RgbImage) -> Pending {
        let category = record.category().unwrap_or("").to_owned();
        let bbox = record_bbox(record);
        // The box is read in place: shrunk for the colours, resized for a tagger.
        let (x, y, w, h) = bbox.map_or_else(|| flashfit_models::whole(&img), |b| region(&img, b));
        let small = shrink_region(&img, (x, y, w, h), self.config.max_side);
        let tagger_input = self
            .tagger
            .as_ref()
            .map(|t| t.prepare_region(&img, (x, y, w, h)));
        let worn = (self.config.person_mask
            && self.mask.is_some()
            && matches!(
                record.detection.as_ref().map(|d| d.source),
                Some(DetectionSource::Person | DetectionSource::Pose)
            ))
        .then(|| {
            let (w, h) = img.dimensions();
            let b = bbox.unwrap_or([0.0, 0.0, f64::from(w), f64::from(h)]);
            (img, b)
        });
        let skinless = record
            .classification
            .as_ref()
            .and_then(|c| c.group.as_deref())
            != Some("footwear");
        Pending {
            category,
            small,
            worn,
            skinless,
            tagger_input,
        }
    }

    fn infer(&self, batch: Vec<Pending>) -> Result<Vec<Tags>, String> {
        self.tag_batch(batch)
    }

    fn finish(&self, record: &mut GarmentRecord, t: Tags) {
        record.attributes = Some(Record {
            color_primary: t.colours.first().map(|c| c.name.to_owned()),
            color_secondary: t.colours.get(1).map(|c| c.name.to_owned()),
            colors: t
                .colours
                .iter()
                .map(|c| ColorShare {
                    name: c.name.to_owned(),
                    rgb: c.rgb,
                    share: (c.percentage * 1000.0).round() / 1000.0,
                })
                .collect(),
            pattern: t.pattern,
            fit: t.fit,
            formality: ((f64::from(t.formality) * 100.0).round() / 100.0) as f32,
            seasons: t.seasons,
            style_tags: t.style_tags,
            background_mask: t.mask.to_owned(),
            extra: Default::default(),
        });
    }

    fn models(&self) -> Vec<(String, String)> {
        let mut m = vec![(RULES_NAME.to_owned(), RULES_VERSION.to_owned())];
        if self.mask.is_some() && self.config.person_mask {
            m.push((PersonMask::NAME.to_owned(), PersonMask::VERSION.to_owned()));
        }
        if let Some(t) = &self.tagger {
            m.push((t.name.clone(), t.version.clone()));
        }
        m
    }
}

#[cfg(test)]
mod tests;
