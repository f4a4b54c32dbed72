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
    let bomb = crate::testkit::png_bomb(30_000, 30_000);
    let err = analyze(&bomb, LIMITS).expect_err("bomb");
    assert!(matches!(err, AnalyzeError::TooLarge(_)), "{err}");
    let jpeg_bomb = crate::testkit::jpeg_with_dims(
        &std::fs::read(fixtures().join("photos/cat.jpg")).expect("jpg"),
        30_000,
        30_000,
    );
    let err = analyze(&jpeg_bomb, LIMITS).expect_err("jpeg bomb");
    assert!(matches!(err, AnalyzeError::TooLarge(_)), "{err}");
}

/// libjpeg-turbo decodes the fixture photos to the pixels zune-jpeg gives, within the last
/// bits of the two decoders' integer IDCTs; data it only warns about (a corrupted entropy
/// segment, which it would fill in) is left to zune-jpeg, whose verdict stands.
#[test]
fn libjpeg_turbo_decodes_what_zune_jpeg_decodes_and_refuses_what_it_would_patch() {
    for name in [
        "person_suit.jpg",
        "cat.jpg",
        "motorcycle.jpg",
        "rocket_exif_rotated.jpg",
    ] {
        let bytes = std::fs::read(fixtures().join("photos").join(name)).expect("photo");
        let mut zune = JpegDecoder::new(ZCursor::new(&bytes[..]));
        let reference = zune.decode().expect("zune decodes the fixture");
        let (w, h) = zune.dimensions().expect("dimensions");
        let turbo = decode_jpeg_turbo(&bytes, w as u32, h as u32).expect("turbo decodes it");
        assert_eq!(turbo.len(), reference.len(), "{name}");
        let diffs: Vec<u32> = turbo
            .iter()
            .zip(&reference)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = f64::from(diffs.iter().sum::<u32>()) / diffs.len() as f64;
        assert!(max <= 8 && mean < 0.5, "{name}: max {max}, mean {mean}");
        // Wrong dimensions (a caller's stale header) are refused, not misread.
        assert!(decode_jpeg_turbo(&bytes, w as u32 + 1, h as u32).is_none());
    }
    // Noise written over the middle of the entropy-coded data: libjpeg-turbo warns (and would
    // patch the rest grey), so the turbo path declines and the zune-jpeg path decides.
    let mut broken = std::fs::read(fixtures().join("photos/person_suit.jpg")).expect("photo");
    let mid = broken.len() / 2;
    for (i, b) in broken[mid..mid + 512].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2654435761).to_le_bytes()[1];
    }
    let mut zune = JpegDecoder::new(ZCursor::new(&broken[..]));
    zune.decode_headers().expect("the header is intact");
    let (w, h) = zune.dimensions().expect("dimensions");
    assert!(decode_jpeg_turbo(&broken, w as u32, h as u32).is_none());
}
