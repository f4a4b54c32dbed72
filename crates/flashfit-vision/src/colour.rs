//! Garment colours (seed: "Attribute Tagging", colour extraction): mask the background, cluster
//! the garment's pixels with k-means in CIELAB, and name each cluster by the nearest of the
//! seed's 14 fashion colours. Nearest is CIE94 with the textile weights (lightness counts half:
//! shade and lighting move a garment's lightness far more than its hue: dark denim is navy),
//! over each name's reference and the common shades sold under it ([`SHADES`]: an
//! international-orange suit is orange, a camel coat in shadow is tan, not grey).
//!
//! A worn garment's pixels also drop the wearer's skin ([`is_skin`]), unless skin tones are
//! most of what is left (then the garment itself is skin-coloured: a tan coat, a beige top).
//!
//! The background mask is the flat-lay heuristic: a wardrobe photo's border is background, so
//! pixels close (in Lab) to the dominant border colour are masked out.

use image::RgbImage;
use serde::Serialize;

/// The seed's named fashion colours and their reference sRGB values.
pub const FASHION_COLOURS: [(&str, [u8; 3]); 14] = [
    ("black", [0, 0, 0]),
    ("white", [255, 255, 255]),
    ("grey", [128, 128, 128]),
    ("navy", [0, 0, 128]),
    ("blue", [70, 130, 180]),
    ("red", [220, 20, 60]),
    ("green", [34, 139, 34]),
    ("brown", [139, 69, 19]),
    ("tan", [210, 180, 140]),
    ("beige", [245, 245, 220]),
    ("pink", [255, 182, 193]),
    ("purple", [128, 0, 128]),
    ("orange", [255, 140, 0]),
    ("yellow", [255, 215, 0]),
];

/// Shades sold under a fashion colour's name, besides its reference in [`FASHION_COLOURS`].
pub const SHADES: [(&str, [u8; 3]); 12] = [
    ("blue", [40, 80, 160]),     // royal
    ("blue", [140, 175, 220]),   // light blue
    ("red", [140, 20, 35]),      // burgundy
    ("green", [85, 107, 47]),    // olive
    ("brown", [100, 65, 40]),    // dark brown
    ("tan", [190, 150, 110]),    // camel
    ("beige", [225, 205, 175]),  // sand
    ("grey", [190, 190, 190]),   // light grey
    ("purple", [150, 120, 190]), // lavender
    ("orange", [230, 100, 50]),  // international orange, rust
    ("yellow", [200, 160, 40]),  // mustard
    ("pink", [230, 120, 150]),   // deep pink
];

/// One colour of a garment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColourShare {
    pub name: &'static str,
    pub rgb: [u8; 3],
    /// Share of the garment's pixels, 0..1.
    pub percentage: f32,
}

/// Settings for [`extract`].
#[derive(Debug, Clone)]
pub struct ColourConfig {
    /// Clusters (2–3 in the seed).
    pub k: usize,
    /// Lab distance under which a pixel counts as the border (background) colour.
    pub background_delta_e: f32,
    /// Longest side the image is reduced to before clustering (speed; colours are regional).
    pub max_side: u32,
}

impl Default for ColourConfig {
    fn default() -> Self {
        ColourConfig {
            k: 3,
            background_delta_e: 12.0,
            max_side: 160,
        }
    }
}

fn linear_of(c: u8) -> f32 {
    let c = f32::from(c) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// sRGB component → linear light, from a table of the 256 values (`powf` per pixel was a
/// tenth of the detect stage's CPU).
fn linear(c: u8) -> f32 {
    static TABLE: std::sync::LazyLock<[f32; 256]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|i| linear_of(i as u8)));
    TABLE[usize::from(c)]
}

/// The default of `[detect] foreground_side`: pixels of a photo's long side that
/// [`foreground_box`] looks at (larger photos are sampled every n-th pixel in both directions).
pub const FOREGROUND_SIDE: u32 = 256;

/// sRGB → CIELAB (D65).
pub fn lab(rgb: [u8; 3]) -> [f32; 3] {
    let (r, g, b) = (linear(rgb[0]), linear(rgb[1]), linear(rgb[2]));
    let x = (0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b) / 0.950_47;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175 * b;
    let z = (0.019_333_9 * r + 0.119_192 * g + 0.950_304_1 * b) / 1.088_83;
    let f = |t: f32| {
        if t > 0.008_856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn dist2(a: [f32; 3], b: [f32; 3]) -> f32 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}

/// CIE94 colour difference of `sample` from `reference` (both Lab), textile weights
/// (kL = 2, K1 = 0.048, K2 = 0.014).
pub fn delta_e94(reference: [f32; 3], sample: [f32; 3]) -> f32 {
    let [l1, a1, b1] = reference;
    let [l2, a2, b2] = sample;
    let (c1, c2) = (a1.hypot(b1), a2.hypot(b2));
    let (dl, dc) = (l1 - l2, c1 - c2);
    let dh2 = ((a1 - a2).powi(2) + (b1 - b2).powi(2) - dc * dc).max(0.0);
    let (sc, sh) = (1.0 + 0.048 * c1, 1.0 + 0.014 * c1);
    ((dl / 2.0).powi(2) + (dc / sc).powi(2) + dh2 / (sh * sh)).sqrt()
}

/// The references and shades of every name, in Lab, computed once.
fn named_labs() -> &'static [(&'static str, [f32; 3])] {
    static LABS: std::sync::LazyLock<Vec<(&'static str, [f32; 3])>> =
        std::sync::LazyLock::new(|| {
            FASHION_COLOURS
                .iter()
                .chain(&SHADES)
                .map(|(n, rgb)| (*n, lab(*rgb)))
                .collect()
        });
    &LABS
}

/// The nearest named fashion colour: CIE94 (textiles) to each name's reference and shades.
pub fn name_of(rgb: [u8; 3]) -> &'static str {
    let l = lab(rgb);
    named_labs()
        .iter()
        .min_by(|a, b| delta_e94(a.1, l).total_cmp(&delta_e94(b.1, l)))
        .map(|(n, _)| *n)
        .unwrap_or("unknown")
}

/// Whether an sRGB pixel has a human skin tone: the YCbCr box of Chai & Ngan (1999),
/// Cr 133–173 and Cb 77–127, which holds skin of every complexion (and also tan, beige and
/// brown cloth: see [`without_skin`]).
pub fn is_skin(rgb: [u8; 3]) -> bool {
    let [r, g, b] = rgb.map(f32::from);
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let cr = 128.0 + 0.713 * (r - y);
    let cb = 128.0 + 0.564 * (b - y);
    (133.0..=173.0).contains(&cr) && (77.0..=127.0).contains(&cb)
}

/// `gp` without its skin-toned pixels, when they are less than `max_share` of its pixels (a
/// worn garment's crop holds arms, necks and faces); unchanged when skin tones are most of it
/// (the garment is skin-coloured).
pub fn without_skin(gp: GarmentPixels, max_share: f32) -> GarmentPixels {
    let skin: Vec<bool> = gp.img.pixels().map(|p| is_skin(p.0)).collect();
    let kept = gp.count();
    let skin_kept = gp
        .mask
        .iter()
        .zip(&skin)
        .filter(|(m, s)| **m && **s)
        .count();
    if kept == 0 || skin_kept as f32 >= max_share * kept as f32 {
        return gp;
    }
    let mask = gp.mask.iter().zip(&skin).map(|(m, s)| *m && !*s).collect();
    GarmentPixels { img: gp.img, mask }
}

/// A thumbnail of the garment and which of its pixels belong to it (the background masked).
#[derive(Debug, Clone)]
pub struct GarmentPixels {
    pub img: RgbImage,
    pub mask: Vec<bool>,
}

impl GarmentPixels {
    pub fn count(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }
}

/// `img` reduced to at most `max_side` pixels on its long side (area average, as
/// `image::imageops::thumbnail`).
pub fn shrink(img: &RgbImage, max_side: u32) -> RgbImage {
    shrink_region(img, flashfit_models::whole(img), max_side)
}

/// [`shrink`] of the `region` (x, y, w, h) of `img`, read in place.
pub fn shrink_region(img: &RgbImage, region: flashfit_models::Region, max_side: u32) -> RgbImage {
    let (x, y, w, h) = region;
    if w == 0 || h == 0 {
        return RgbImage::new(0, 0);
    }
    let scale = (f64::from(max_side) / f64::from(w.max(h))).min(1.0);
    let (nw, nh) = (
        ((f64::from(w) * scale) as u32).max(1),
        ((f64::from(h) * scale) as u32).max(1),
    );
    thumbnail_blocks(img, region, nw, nh).unwrap_or_else(|| {
        image::imageops::thumbnail(&*image::imageops::crop_imm(img, x, y, w, h), nw, nh)
    })
}

/// `image::imageops::thumbnail` of a region when every output pixel is the rounded mean of a
/// block of whole source pixels (always so when shrinking): the same spans and integer means,
/// summed straight from the buffer instead of pixel by pixel through a view (a fifth of the
/// attributes stage's CPU). `None` when some output pixel would need image's fractional
/// branches (enlarging), which the caller leaves to image.
fn thumbnail_blocks(
    img: &RgbImage,
    (x, y, w, h): flashfit_models::Region,
    nw: u32,
    nh: u32,
) -> Option<RgbImage> {
    // image's spans, in f32 as it computes them.
    let spans = |inp: u32, out: u32| -> Option<Vec<(usize, usize)>> {
        let ratio = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let lowf = o as f32 * ratio;
                let highf = lowf + ratio;
                let low = (lowf.ceil() as u32).clamp(0, inp - 1);
                let high = (highf.ceil() as u32).clamp(low, inp);
                (low != high).then_some((low as usize, high as usize))
            })
            .collect()
    };
    let (xs, ys) = (spans(w, nw)?, spans(h, nh)?);
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    let mut out = Vec::with_capacity(nw as usize * nh as usize * 3);
    for &(y0, y1) in &ys {
        for &(x0, x1) in &xs {
            let mut sum = [0u32; 3];
            for row in y0..y1 {
                let start = (y as usize + row) * stride + (x as usize + x0) * 3;
                for px in src[start..start + (x1 - x0) * 3].chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
            let n = ((x1 - x0) * (y1 - y0)) as u32;
            out.extend(sum.map(|s| ((s + n / 2) / n).min(255) as u8));
        }
    }
    RgbImage::from_raw(nw, nh, out)
}

/// Reduces `img` to at most `cfg.max_side` and masks the background: with `keep` (a person
/// mask, called with the pixel's relative position 0..1 in `img`) the pixels it rejects, else
/// the pixels within `background_delta_e` of the border colour (flat-lay photos).
pub fn garment_pixels(
    img: &RgbImage,
    cfg: &ColourConfig,
    keep: Option<&dyn Fn(f32, f32) -> bool>,
) -> GarmentPixels {
    garment_pixels_of(shrink(img, cfg.max_side), cfg, keep)
}

/// [`garment_pixels`] of an image already [`shrink`]ed to `cfg.max_side`.
pub fn garment_pixels_of(
    small: RgbImage,
    cfg: &ColourConfig,
    keep: Option<&dyn Fn(f32, f32) -> bool>,
) -> GarmentPixels {
    if small.width() == 0 || small.height() == 0 {
        return GarmentPixels {
            img: RgbImage::new(0, 0),
            mask: Vec::new(),
        };
    }
    let (sw, sh) = (small.width() as f32, small.height() as f32);
    let mask = match keep {
        Some(keep) => small
            .enumerate_pixels()
            .map(|(x, y, _)| keep((x as f32 + 0.5) / sw, (y as f32 + 0.5) / sh))
            .collect(),
        None => {
            let bg_lab = lab(border_colour(&small));
            let limit = cfg.background_delta_e * cfg.background_delta_e;
            let raw: Vec<bool> = small
                .pixels()
                .map(|p| dist2(lab(p.0), bg_lab) > limit)
                .collect();
            fill_holes(&raw, small.width() as usize, small.height() as usize)
        }
    };
    GarmentPixels { img: small, mask }
}

/// Closes holes in a mask: a pixel belongs when garment pixels enclose it on its row or on its
/// column (white stripes on a shirt photographed on white stay part of the shirt).
fn fill_holes(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let span = |it: &mut dyn Iterator<Item = (usize, bool)>| {
        let on: Vec<usize> = it.filter(|(_, m)| *m).map(|(i, _)| i).collect();
        (on.first().copied(), on.last().copied())
    };
    let rows: Vec<(Option<usize>, Option<usize>)> = (0..h)
        .map(|y| span(&mut (0..w).map(|x| (x, mask[y * w + x]))))
        .collect();
    let cols: Vec<(Option<usize>, Option<usize>)> = (0..w)
        .map(|x| span(&mut (0..h).map(|y| (y, mask[y * w + x]))))
        .collect();
    let inside = |v: usize, s: (Option<usize>, Option<usize>)| match s {
        (Some(a), Some(b)) => (a..=b).contains(&v),
        _ => false,
    };
    (0..h * w)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            mask[i] || inside(x, rows[y]) || inside(y, cols[x])
        })
        .collect()
}

/// The garment's colours, most common first. Empty when no garment pixels remain.
pub fn extract(img: &RgbImage, cfg: &ColourConfig) -> Vec<ColourShare> {
    extract_from(&garment_pixels(img, cfg, None), cfg.k)
}

/// k-means in CIELAB over the garment pixels, each cluster named by its mean colour.
pub fn extract_from(gp: &GarmentPixels, k: usize) -> Vec<ColourShare> {
    let garment: Vec<([f32; 3], [u8; 3])> = gp
        .img
        .pixels()
        .zip(&gp.mask)
        .filter(|(_, m)| **m)
        .map(|(p, _)| (lab(p.0), p.0))
        .collect();
    if garment.len() < 20 {
        return Vec::new();
    }
    let points: Vec<[f32; 3]> = garment.iter().map(|(l, _)| *l).collect();
    let (centres, assign) = kmeans(&points, k.clamp(1, 8), 20);
    let mut out: Vec<ColourShare> = (0..centres.len())
        .filter_map(|c| {
            let members: Vec<&[u8; 3]> = garment
                .iter()
                .zip(&assign)
                .filter(|(_, a)| **a == c)
                .map(|((_, rgb), _)| rgb)
                .collect();
            if members.is_empty() {
                return None;
            }
            let n = members.len() as f32;
            let mean =
                |i: usize| (members.iter().map(|m| f32::from(m[i])).sum::<f32>() / n).round() as u8;
            let rgb = [mean(0), mean(1), mean(2)];
            Some(ColourShare {
                name: name_of(rgb),
                rgb,
                percentage: n / garment.len() as f32,
            })
        })
        .collect();
    out.sort_by(|a, b| b.percentage.total_cmp(&a.percentage));
    out
}

/// The background colour of a flat-lay photo: the most common coarse colour of its border.
fn border_colour(img: &RgbImage) -> [u8; 3] {
    let (w, h) = img.dimensions();
    let mut border: Vec<[u8; 3]> = Vec::with_capacity(2 * (w + h) as usize);
    for x in 0..w {
        border.push(img.get_pixel(x, 0).0);
        border.push(img.get_pixel(x, h - 1).0);
    }
    for y in 0..h {
        border.push(img.get_pixel(0, y).0);
        border.push(img.get_pixel(w - 1, y).0);
    }
    dominant(&border)
}

/// The detect stage's fallback when no detector fires: the bounding box `[x1, y1, x2, y2]`
/// (original pixels) of everything that differs from the border colour by more than
/// `delta_e`, or `None` when the photo is all background; photos over `side` pixels are
/// sampled (the box is then within one sampling step). A wardrobe photo usually shows one
/// garment flat or on a hanger, so this box is the garment.
pub fn foreground_box(img: &RgbImage, delta_e: f32, side: u32) -> Option<[f32; 4]> {
    let (w, h) = img.dimensions();
    if w < 3 || h < 3 {
        return None;
    }
    let bg = lab(border_colour(img));
    let limit = delta_e * delta_e;
    // Every `step`-th pixel: a box within `step` pixels is as good a crop, at 1/step² the cost
    // (`side` 0: every pixel).
    let step = if side == 0 {
        1
    } else {
        w.max(h).div_ceil(side).max(1)
    };
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0u32, 0u32);
    let mut count = 0usize;
    for y in (0..h).step_by(step as usize) {
        for x in (0..w).step_by(step as usize) {
            if dist2(lab(img.get_pixel(x, y).0), bg) > limit {
                x1 = x1.min(x);
                y1 = y1.min(y);
                x2 = x2.max(x);
                y2 = y2.max(y);
                count += 1;
            }
        }
    }
    // Specks are noise, not a garment.
    let sampled = (w.div_ceil(step) as usize) * (h.div_ceil(step) as usize);
    if count < sampled / 200 {
        return None;
    }
    Some([
        x1 as f32,
        y1 as f32,
        (x2 + step).min(w) as f32,
        (y2 + step).min(h) as f32,
    ])
}

/// Most frequent colour after quantising each channel to 16 levels.
fn dominant(px: &[[u8; 3]]) -> [u8; 3] {
    let mut counts = std::collections::HashMap::new();
    for p in px {
        *counts
            .entry([p[0] >> 4, p[1] >> 4, p[2] >> 4])
            .or_insert(0usize) += 1;
    }
    let best = counts
        .into_iter()
        .max_by_key(|(k, c)| (*c, *k))
        .map(|(k, _)| k)
        .unwrap_or([0; 3]);
    let members: Vec<&[u8; 3]> = px
        .iter()
        .filter(|p| [p[0] >> 4, p[1] >> 4, p[2] >> 4] == best)
        .collect();
    let n = members.len().max(1) as u32;
    let mean = |i: usize| (members.iter().map(|m| u32::from(m[i])).sum::<u32>() / n) as u8;
    [mean(0), mean(1), mean(2)]
}

/// Deterministic k-means: farthest-point initialisation, Lloyd iterations.
fn kmeans(points: &[[f32; 3]], k: usize, iters: usize) -> (Vec<[f32; 3]>, Vec<usize>) {
    // Farthest-point seeding: each point's distance to its nearest centre so far, kept up to
    // date as centres are added; the next centre is the (last) farthest point.
    let mut centres = vec![points[0]];
    let mut nearest: Vec<f32> = points.iter().map(|p| dist2(*p, points[0])).collect();
    while centres.len() < k {
        let far = nearest
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(points[0], |(i, _)| points[i]);
        for (d, p) in nearest.iter_mut().zip(points) {
            *d = d.min(dist2(*p, far));
        }
        centres.push(far);
    }
    let mut assign = vec![usize::MAX; points.len()];
    for _ in 0..iters {
        // Each point to its (first) nearest centre.
        let mut moved = false;
        for (a, p) in assign.iter_mut().zip(points) {
            let mut best = (0, f32::MAX);
            for (i, c) in centres.iter().enumerate() {
                let d = dist2(*p, *c);
                if d < best.1 {
                    best = (i, d);
                }
            }
            moved |= *a != best.0;
            *a = best.0;
        }
        // Unchanged assignments give the same centres again: every further round would too.
        if !moved {
            break;
        }
        let mut sums = vec![[0f32; 4]; centres.len()];
        for (a, p) in assign.iter().zip(points) {
            for d in 0..3 {
                sums[*a][d] += p[d];
            }
            sums[*a][3] += 1.0;
        }
        for (c, s) in centres.iter_mut().zip(&sums) {
            if s[3] > 0.0 {
                *c = [s[0] / s[3], s[1] / s[3], s[2] / s[3]];
            }
        }
    }
    (centres, assign)
}

#[cfg(test)]
#[path = "colour_tests.rs"]
mod tests;
