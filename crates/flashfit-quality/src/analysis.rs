use std::io::Cursor;

use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Caps applied before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_pixels: u64,
    pub max_side: u32,
}

/// What the quality stage measures on one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Width and height after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// Variance of the 3×3 Laplacian of the greyscale image; `None` when not computed.
    pub blur_score: f64,
    /// Mean greyscale value.
    pub brightness: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    #[error("undecodable image: {0}")]
    Undecodable(String),
    #[error("image too large: {0}")]
    TooLarge(String),
}

/// Decodes `bytes` (JPEG or PNG) within `limits` and measures it. Never panics on input.
///
/// JPEG is decoded with zune-jpeg straight to RGB and converted with OpenCV's fixed-point
/// weights. (Decoding only the luma plane is faster, but JFIF luma differs from OpenCV's
/// grey-of-clamped-RGB by over 1% in blur score on saturated photos, so it is not used.)
pub fn analyze(bytes: &[u8], limits: Limits) -> Result<Analysis, AnalyzeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        analyze_jpeg(bytes, limits)
    } else {
        analyze_other(bytes, limits)
    }
}

fn check_dims(w: u64, h: u64, limits: Limits) -> Result<(), AnalyzeError> {
    if w == 0 || h == 0 {
        return Err(AnalyzeError::Undecodable(format!("empty image {w}x{h}")));
    }
    if w > u64::from(limits.max_side) || h > u64::from(limits.max_side) || w * h > limits.max_pixels
    {
        return Err(AnalyzeError::TooLarge(format!(
            "{w}x{h} exceeds the caps ({} px per side, {} px in all)",
            limits.max_side, limits.max_pixels
        )));
    }
    Ok(())
}

fn oriented(w: u32, h: u32, o: Orientation) -> (u32, u32) {
    match o {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

fn analyze_jpeg(bytes: &[u8], limits: Limits) -> Result<Analysis, AnalyzeError> {
    let side = limits.max_side as usize;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(side)
        .set_max_height(side)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    dec.decode_headers()
        .map_err(|e| classify_jpeg_error(&e.to_string()))?;
    let info = dec
        .info()
        .ok_or_else(|| AnalyzeError::Undecodable("no JPEG header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_dims(w.into(), h.into(), limits)?;
    // Truncated files decode "successfully" with grey filler in lenient decoders: require the
    // end-of-image marker near the end of the data.
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    if !tail.windows(2).any(|p| p == [0xFF, 0xD9]) {
        return Err(AnalyzeError::Undecodable(
            "truncated JPEG (no end-of-image marker)".into(),
        ));
    }
    let orientation = dec
        .exif()
        .and_then(|e| Orientation::from_exif_chunk(e))
        .unwrap_or(Orientation::NoTransforms);
    let rgb = dec
        .decode()
        .map_err(|e| classify_jpeg_error(&e.to_string()))?;
    if rgb.len() != (w as usize) * (h as usize) * 3 {
        return Err(AnalyzeError::Undecodable(format!(
            "decoder returned {} bytes for {w}x{h}",
            rgb.len()
        )));
    }
    Ok(measure(&rgb_to_gray(&rgb), w, h, orientation))
}

fn classify_jpeg_error(msg: &str) -> AnalyzeError {
    if msg.contains("width") || msg.contains("height") || msg.contains("too large") {
        AnalyzeError::TooLarge(msg.to_owned())
    } else {
        AnalyzeError::Undecodable(msg.to_owned())
    }
}

fn analyze_other(bytes: &[u8], limits: Limits) -> Result<Analysis, AnalyzeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| AnalyzeError::Undecodable(e.to_string()))?;
    if reader.format().is_none() {
        return Err(AnalyzeError::Undecodable(
            "not a supported image format (JPEG, PNG)".into(),
        ));
    }
    let mut dec = reader
        .into_decoder()
        .map_err(|e| AnalyzeError::Undecodable(e.to_string()))?;
    let (w, h) = dec.dimensions();
    check_dims(w.into(), h.into(), limits)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    // RGBA16 is the widest layout decoded here; leave room for the decoder's own buffers.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    dec.set_limits(l)
        .map_err(|e| AnalyzeError::TooLarge(e.to_string()))?;
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let img = image::DynamicImage::from_decoder(dec).map_err(|e| match e {
        image::ImageError::Limits(l) => AnalyzeError::TooLarge(l.to_string()),
        other => AnalyzeError::Undecodable(other.to_string()),
    })?;
    Ok(measure(&opencv_gray(&img), w, h, orientation))
}

/// Stats of the stored (unrotated) greyscale image; dimensions as displayed. The Laplacian
/// variance and the mean do not change under rotation or flips, so the pixels are not rotated.
fn measure(gray: &[u8], w: u32, h: u32, orientation: Orientation) -> Analysis {
    let (blur_score, brightness) = gray_stats(gray, w as usize, h as usize);
    let (width, height) = oriented(w, h, orientation);
    Analysis {
        width,
        height,
        blur_score,
        brightness,
    }
}

/// Greyscale exactly as OpenCV's `cvtColor(…, COLOR_BGR2GRAY)` on 8-bit input: fixed-point
/// 0.299 R + 0.587 G + 0.114 B with rounding. (image's `to_luma8` uses other weights.)
fn opencv_gray(img: &image::DynamicImage) -> Vec<u8> {
    rgb_to_gray(img.to_rgb8().as_raw())
}

fn rgb_to_gray(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((u32::from(p[0]) * 4899 + u32::from(p[1]) * 9617 + u32::from(p[2]) * 1868 + (1 << 13))
                >> 14) as u8
        })
        .collect()
}

/// `(Laplacian variance, mean)` of a greyscale image, matching
/// `cv2.Laplacian(gray, cv2.CV_64F).var()` (3×3 kernel [0,1,0; 1,−4,1; 0,1,0], border
/// reflect-101) and `gray.mean()`. Integer sums make it exact.
pub fn gray_stats(gray: &[u8], w: usize, h: usize) -> (f64, f64) {
    let n = (w * h) as f64;
    if w == 0 || h == 0 || gray.len() < w * h {
        return (0.0, 0.0);
    }
    let total: u64 = gray.iter().map(|&v| u64::from(v)).sum();
    let reflect = |i: isize, len: usize| -> usize {
        if len == 1 {
            0
        } else if i < 0 {
            (-i) as usize
        } else if i as usize >= len {
            2 * len - 2 - i as usize
        } else {
            i as usize
        }
    };
    let mut sum: i64 = 0;
    let mut sq: u64 = 0;
    for y in 0..h {
        let up = &gray[reflect(y as isize - 1, h) * w..][..w];
        let cur = &gray[y * w..][..w];
        let down = &gray[reflect(y as isize + 1, h) * w..][..w];
        let lap_at = |x: usize| -> i32 {
            let l = cur[reflect(x as isize - 1, w)];
            let r = cur[reflect(x as isize + 1, w)];
            i32::from(up[x]) + i32::from(down[x]) + i32::from(l) + i32::from(r)
                - 4 * i32::from(cur[x])
        };
        // Borders.
        for x in [0, w - 1] {
            let v = lap_at(x);
            sum += i64::from(v);
            sq += (i64::from(v) * i64::from(v)) as u64;
            if w == 1 {
                break;
            }
        }
        if w > 2 {
            let (s, q) = row_interior(up, cur, down);
            sum += s;
            sq += q;
        }
    }
    let mean_lap = sum as f64 / n;
    let var = sq as f64 / n - mean_lap * mean_lap;
    (var.max(0.0), total as f64 / n)
}

/// Laplacian sum and sum of squares over `1..w-1` of one row; written over equal-length
/// slices so the compiler vectorises it.
#[inline]
fn row_interior(up: &[u8], cur: &[u8], down: &[u8]) -> (i64, u64) {
    let w = cur.len();
    let (u, d) = (&up[1..w - 1], &down[1..w - 1]);
    let (l, c, r) = (&cur[..w - 2], &cur[1..w - 1], &cur[2..]);
    let mut sum: i64 = 0;
    let mut sq: u64 = 0;
    // Chunks bound the i32 accumulators: 1024 * 1020^2 < 2^31 is false, so square into u32
    // per element (1020^2 < 2^32) and widen per chunk.
    for start in (0..u.len()).step_by(256) {
        let end = (start + 256).min(u.len());
        let mut s: i32 = 0;
        let mut q: u64 = 0;
        for i in start..end {
            let v = i32::from(u[i]) + i32::from(d[i]) + i32::from(l[i]) + i32::from(r[i])
                - 4 * i32::from(c[i]);
            s += v;
            q += u64::from((v * v) as u32);
        }
        sum += i64::from(s);
        sq += q;
    }
    (sum, sq)
}

#[cfg(test)]
mod tests;
