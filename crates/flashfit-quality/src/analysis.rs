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
/// JPEG is decoded to RGB by libjpeg-turbo (zune-jpeg where it refuses) and converted with
/// OpenCV's fixed-point weights. (Decoding only the luma plane is faster, but JFIF luma differs
/// from OpenCV's grey-of-clamped-RGB by over 1% in blur score on saturated photos, so it is not
/// used.)
pub fn analyze(bytes: &[u8], limits: Limits) -> Result<Analysis, AnalyzeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        analyze_jpeg(bytes, limits)
    } else {
        analyze_other(bytes, limits)
    }
}

pub(crate) fn check_dims(w: u64, h: u64, limits: Limits) -> Result<(), AnalyzeError> {
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

/// Truncated JPEGs decode "successfully" with grey filler in lenient decoders: require the
/// end-of-image marker near the end of the data.
pub(crate) fn check_jpeg_complete(bytes: &[u8]) -> Result<(), AnalyzeError> {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    if tail.windows(2).any(|p| p == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(AnalyzeError::Undecodable(
            "truncated JPEG (no end-of-image marker)".into(),
        ))
    }
}

pub(crate) fn oriented(w: u32, h: u32, o: Orientation) -> (u32, u32) {
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
    check_jpeg_complete(bytes)?;
    let orientation = dec
        .exif()
        .and_then(|e| Orientation::from_exif_chunk(e))
        .unwrap_or(Orientation::NoTransforms);
    let rgb = match decode_jpeg_turbo(bytes, w, h) {
        Some(rgb) => rgb,
        None => dec
            .decode()
            .map_err(|e| classify_jpeg_error(&e.to_string()))?,
    };
    if rgb.len() != (w as usize) * (h as usize) * 3 {
        return Err(AnalyzeError::Undecodable(format!(
            "decoder returned {} bytes for {w}x{h}",
            rgb.len()
        )));
    }
    Ok(measure(&rgb, w, h, orientation))
}

/// Progressive scans libjpeg-turbo reads before it gives up (a crafted file can repeat scans
/// to make decoding arbitrarily slow; real photos have at most a dozen).
const JPEG_SCAN_LIMIT: u32 = 500;

/// The `w`×`h` JPEG as RGB, decoded by libjpeg-turbo (SIMD; about a fifth less CPU than
/// zune-jpeg on 1024 px photos, README Benchmarks). `None` when it refuses the data or only
/// warns about it (corrupt or truncated data, CMYK, 12-bit): the caller then decodes with
/// zune-jpeg, whose verdict stands, so what is rejected and why does not change.
pub(crate) fn decode_jpeg_turbo(bytes: &[u8], w: u32, h: u32) -> Option<Vec<u8>> {
    decode_jpeg_turbo_reduced(bytes, w, h, 1).map(|(pixels, _, _)| pixels)
}

/// [`decode_jpeg_turbo`] at 1/`reduce` of the size (1, 2, 4 or 8; libjpeg-turbo's DCT
/// scaling, which averages rather than skips pixels): the pixels and their width and height
/// (each side rounded up).
pub(crate) fn decode_jpeg_turbo_reduced(
    bytes: &[u8],
    w: u32,
    h: u32,
    reduce: u32,
) -> Option<(Vec<u8>, u32, u32)> {
    let mut dec = turbojpeg::Decompressor::new().ok()?;
    dec.set_scan_limit(JPEG_SCAN_LIMIT).ok()?;
    let header = dec.read_header(bytes).ok()?;
    if (header.width, header.height) != (w as usize, h as usize) {
        return None;
    }
    let factor = turbojpeg::ScalingFactor::new(1, reduce.clamp(1, 8) as usize);
    let header = header.scaled(factor);
    dec.set_scaling_factor(factor).ok()?;
    let (width, height) = (header.width, header.height);
    let mut pixels = vec![0u8; width * height * 3];
    let image = turbojpeg::Image {
        pixels: &mut pixels[..],
        width,
        pitch: width * 3,
        height,
        format: turbojpeg::PixelFormat::RGB,
    };
    dec.decompress(bytes, image).ok()?;
    Some((
        pixels,
        u32::try_from(width).ok()?,
        u32::try_from(height).ok()?,
    ))
}

fn classify_jpeg_error(msg: &str) -> AnalyzeError {
    if msg.contains("width") || msg.contains("height") || msg.contains("too large") {
        AnalyzeError::TooLarge(msg.to_owned())
    } else {
        AnalyzeError::Undecodable(msg.to_owned())
    }
}

fn analyze_other(bytes: &[u8], limits: Limits) -> Result<Analysis, AnalyzeError> {
    let (img, orientation) = decode_rgb(bytes, limits)?;
    Ok(measure(
        img.as_raw(),
        img.width(),
        img.height(),
        orientation,
    ))
}

/// Decodes any supported format to RGB as stored (orientation not applied), refusing images
/// over the caps from their header, before any pixel buffer is allocated.
pub(crate) fn decode_rgb(
    bytes: &[u8],
    limits: Limits,
) -> Result<(image::RgbImage, Orientation), AnalyzeError> {
    decode_rgb_reduced(bytes, limits, 1).map(|(img, o, _)| (img, o))
}

/// [`decode_rgb`] of a JPEG at 1/`reduce` of its size (1, 2, 4 or 8) where libjpeg-turbo
/// decodes it; at full size otherwise (other formats, or data left to zune-jpeg). Also returns
/// the full size (as stored): the image's own size against it gives the scale.
pub(crate) fn decode_rgb_reduced(
    bytes: &[u8],
    limits: Limits,
    reduce: u32,
) -> Result<(image::RgbImage, Orientation, (u32, u32)), AnalyzeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| AnalyzeError::Undecodable(e.to_string()))?;
    let format = reader.format();
    if format.is_none() {
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
    if format == Some(image::ImageFormat::Jpeg)
        && let Some((rgb, rw, rh)) = decode_jpeg_turbo_reduced(bytes, w, h, reduce)
        && let Some(img) = image::RgbImage::from_raw(rw, rh, rgb)
    {
        return Ok((img, orientation, (w, h)));
    }
    let img = image::DynamicImage::from_decoder(dec).map_err(|e| match e {
        image::ImageError::Limits(l) => AnalyzeError::TooLarge(l.to_string()),
        other => AnalyzeError::Undecodable(other.to_string()),
    })?;
    // `into_rgb8`: a JPEG decodes to RGB8 already, so no copy of the pixels.
    Ok((img.into_rgb8(), orientation, (w, h)))
}

/// Stats of the stored (unrotated) RGB image; dimensions as displayed. The Laplacian variance
/// and the mean do not change under rotation or flips, so the pixels are not rotated.
fn measure(rgb: &[u8], w: u32, h: u32, orientation: Orientation) -> Analysis {
    let (blur_score, brightness) = rgb_stats(rgb, w as usize, h as usize);
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
#[inline]
fn gray_row(rgb: &[u8], out: &mut [u8]) {
    for (o, p) in out.iter_mut().zip(rgb.chunks_exact(3)) {
        *o =
            ((u32::from(p[0]) * 4899 + u32::from(p[1]) * 9617 + u32::from(p[2]) * 1868 + (1 << 13))
                >> 14) as u8;
    }
}

/// Stats of an RGB image, converting to grey one row at a time (three rows live at once), so
/// no full greyscale image is ever allocated.
fn rgb_stats(rgb: &[u8], w: usize, h: usize) -> (f64, f64) {
    stats_rows(w, h, |y, out| gray_row(&rgb[y * w * 3..][..w * 3], out))
}

/// `(Laplacian variance, mean)` of a greyscale image, matching
/// `cv2.Laplacian(gray, cv2.CV_64F).var()` (3×3 kernel [0,1,0; 1,−4,1; 0,1,0], border
/// reflect-101) and `gray.mean()`. Integer sums make it exact.
pub fn gray_stats(gray: &[u8], w: usize, h: usize) -> (f64, f64) {
    if gray.len() < w * h {
        return (0.0, 0.0);
    }
    stats_rows(w, h, |y, out| out.copy_from_slice(&gray[y * w..][..w]))
}

fn reflect101(i: isize, len: usize) -> usize {
    if len == 1 {
        0
    } else if i < 0 {
        (-i) as usize
    } else if i as usize >= len {
        2 * len - 2 - i as usize
    } else {
        i as usize
    }
}

/// The single pass behind [`gray_stats`]: `row(y, out)` writes grey row `y`. Rows are produced
/// in order into a three-row window; the mean is summed from each row as it becomes current.
fn stats_rows(w: usize, h: usize, mut row: impl FnMut(usize, &mut [u8])) -> (f64, f64) {
    if w == 0 || h == 0 {
        return (0.0, 0.0);
    }
    let mut prev = vec![0u8; w];
    let mut cur = vec![0u8; w];
    let mut next = vec![0u8; w];
    row(reflect101(-1, h), &mut prev);
    row(0, &mut cur);
    let mut total: u64 = 0;
    let mut sum: i64 = 0;
    let mut sq: u64 = 0;
    for y in 0..h {
        row(reflect101(y as isize + 1, h), &mut next);
        total += cur.iter().map(|&v| u64::from(v)).sum::<u64>();
        let lap_at = |x: usize| -> i64 {
            let l = cur[reflect101(x as isize - 1, w)];
            let r = cur[reflect101(x as isize + 1, w)];
            i64::from(prev[x]) + i64::from(next[x]) + i64::from(l) + i64::from(r)
                - 4 * i64::from(cur[x])
        };
        let edges: &[usize] = if w == 1 { &[0] } else { &[0, w - 1] };
        for &x in edges {
            let v = lap_at(x);
            sum += v;
            sq += (v * v) as u64;
        }
        if w > 2 {
            let (s, q) = row_interior(&prev, &cur, &next);
            sum += s;
            sq += q;
        }
        // Slide the window down one row.
        std::mem::swap(&mut prev, &mut cur);
        std::mem::swap(&mut cur, &mut next);
    }
    let n = (w * h) as f64;
    let mean_lap = sum as f64 / n;
    let var = sq as f64 / n - mean_lap * mean_lap;
    (var.max(0.0), total as f64 / n)
}

/// Laplacian sum and sum of squares over `1..w-1` of one row. Values fit in i16 (|v| ≤ 1020)
/// and squares in u32 over 1024-pixel chunks (1024 · 1020² < 2³²), which lets the compiler
/// vectorise with plain SSE2.
#[inline]
fn row_interior(up: &[u8], cur: &[u8], down: &[u8]) -> (i64, u64) {
    let w = cur.len();
    let (u, d) = (&up[1..w - 1], &down[1..w - 1]);
    let (l, c, r) = (&cur[..w - 2], &cur[1..w - 1], &cur[2..]);
    let mut sum: i64 = 0;
    let mut sq: u64 = 0;
    for start in (0..u.len()).step_by(1024) {
        let end = (start + 1024).min(u.len());
        let mut s: i32 = 0;
        let mut q: u32 = 0;
        for i in start..end {
            let v = i16::from(u[i]) + i16::from(d[i]) + i16::from(l[i]) + i16::from(r[i])
                - 4 * i16::from(c[i]);
            s += i32::from(v);
            q += (i32::from(v) * i32::from(v)) as u32;
        }
        sum += i64::from(s);
        sq += u64::from(q);
    }
    (sum, sq)
}

#[cfg(test)]
mod tests;
