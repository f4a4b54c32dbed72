use super::*;

const LIMITS: Limits = Limits {
    max_pixels: 50_000_000,
    max_side: 16_384,
};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Blur score and brightness agree with OpenCV (golden values from make_fixtures.py) within 1%
/// on every real photo, JPEG and PNG, including EXIF-rotated ones.
#[test]
fn matches_opencv_golden_values_within_one_percent() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("golden.json")).expect("golden"),
    )
    .expect("json");
    let mut checked = 0;
    for (name, g) in golden.as_object().expect("object") {
        if name.starts_with('_') {
            continue;
        }
        let bytes = std::fs::read(fixtures().join("photos").join(name)).expect("photo");
        let a = analyze(&bytes, LIMITS).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            u64::from(a.width),
            g["width"].as_u64().expect("w"),
            "{name} width"
        );
        assert_eq!(
            u64::from(a.height),
            g["height"].as_u64().expect("h"),
            "{name} height"
        );
        let (gb, gm) = (
            g["blur_score"].as_f64().expect("b"),
            g["brightness"].as_f64().expect("m"),
        );
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-9);
        assert!(
            rel(a.blur_score, gb) < 0.01,
            "{name}: blur {} vs opencv {gb}",
            a.blur_score
        );
        assert!(
            rel(a.brightness, gm) < 0.01,
            "{name}: brightness {} vs opencv {gm}",
            a.brightness
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures checked");
}

#[test]
fn laplacian_variance_matches_a_hand_computed_case() {
    // 3x3 image with one bright centre pixel; reflect-101 borders.
    let g = [0u8, 0, 0, 0, 10, 0, 0, 0, 0];
    // Laplacian: centre -40, edge-adjacent pixels +10 each (4 of them), plus reflection: the
    // corners see nothing, the edges' mirrored neighbours (index 1) add the centre again.
    // Row 0 = [0, 20, 0], row 1 = [20, -40, 20], row 2 = [0, 20, 0].
    let vals = [0f64, 20., 0., 20., -40., 20., 0., 20., 0.];
    let mean = vals.iter().sum::<f64>() / 9.0;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 9.0;
    let (b, m) = gray_stats(&g, 3, 3);
    assert!((b - var).abs() < 1e-9, "{b} vs {var}");
    assert!((m - 10.0 / 9.0).abs() < 1e-9);
    // A flat image has no edges.
    assert_eq!(gray_stats(&[7u8; 12], 4, 3), (0.0, 7.0));
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let photo = std::fs::read(fixtures().join("photos/person_suit.jpg")).expect("photo");
    // Truncated JPEG.
    let err = analyze(&photo[..photo.len() / 2], LIMITS).expect_err("truncated");
    assert!(matches!(err, AnalyzeError::Undecodable(_)), "{err}");
    // Garbage, empty, and a JPEG header followed by noise.
    assert!(matches!(
        analyze(&[0x42; 4096], LIMITS),
        Err(AnalyzeError::Undecodable(_))
    ));
    assert!(matches!(
        analyze(&[], LIMITS),
        Err(AnalyzeError::Undecodable(_))
    ));
    let mut fake = vec![0xFF, 0xD8, 0xFF, 0xE0];
    fake.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    assert!(analyze(&fake, LIMITS).is_err());
    // Every prefix of a real PNG and JPEG fails cleanly or succeeds; never panics.
    let png = std::fs::read(fixtures().join("photos/coffee.png")).expect("png");
    for cut in (0..png.len()).step_by(png.len() / 40) {
        let _ = analyze(&png[..cut], LIMITS);
    }
    for cut in (0..photo.len()).step_by(photo.len() / 40) {
        let _ = analyze(&photo[..cut], LIMITS);
    }
}

/// A tiny file that claims 30000x30000 pixels is refused before any pixel buffer exists.
#[test]
fn pixel_bombs_are_refused_from_the_header() {
    let bomb = png_header_only(30_000, 30_000);
    let err = analyze(&bomb, LIMITS).expect_err("bomb");
    assert!(matches!(err, AnalyzeError::TooLarge(_)), "{err}");
    let jpeg_bomb = jpeg_with_dims(
        &std::fs::read(fixtures().join("photos/cat.jpg")).expect("jpg"),
        30_000,
        30_000,
    );
    let err = analyze(&jpeg_bomb, LIMITS).expect_err("jpeg bomb");
    assert!(matches!(err, AnalyzeError::TooLarge(_)), "{err}");
}

/// A PNG signature + IHDR claiming `w`x`h`, + an empty IDAT and IEND (valid CRCs).
pub(crate) fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Rewrites the frame header (SOF0) of a real JPEG to claim other dimensions.
pub(crate) fn jpeg_with_dims(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let pos = out
        .windows(2)
        .position(|p| p[0] == 0xFF && (p[1] == 0xC0 || p[1] == 0xC2))
        .expect("SOF marker");
    out[pos + 5..pos + 7].copy_from_slice(&h.to_be_bytes());
    out[pos + 7..pos + 9].copy_from_slice(&w.to_be_bytes());
    out
}
