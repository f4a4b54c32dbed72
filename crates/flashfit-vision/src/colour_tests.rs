use super::*;

/// A labelled set rendered here: a T-shirt silhouette in each named colour, under three
/// lighting levels with a soft vertical gradient, folds and sensor noise, on four flat-lay
/// backgrounds. The primary colour must be named right in at least 85% of them.
#[test]
fn names_the_primary_colour_of_rendered_garments() {
    let backgrounds: [(&str, [u8; 3]); 4] = [
        ("white", [246, 246, 244]),
        ("light grey", [210, 212, 214]),
        ("wood", [150, 111, 72]),
        ("charcoal", [38, 38, 42]),
    ];
    let mut total = 0;
    let mut right = 0;
    let mut misses = Vec::new();
    for (name, rgb) in FASHION_COLOURS {
        for (bg_name, bg) in backgrounds {
            for light in [0.85f32, 1.0, 1.12] {
                let img = render_shirt(rgb, bg, light, total as u32);
                let got = extract(&img, &ColourConfig::default());
                total += 1;
                match got.first() {
                    Some(c) if c.name == name => right += 1,
                    other => misses.push(format!(
                        "{name} on {bg_name} x{light}: {:?}",
                        other.map(|c| c.name)
                    )),
                }
            }
        }
    }
    let acc = f64::from(right) / f64::from(total);
    eprintln!("colour accuracy {right}/{total} = {acc:.3}; misses: {misses:#?}");
    assert!(acc >= 0.85, "accuracy {acc:.3}; misses: {misses:#?}");
}

#[test]
fn reference_colours_name_themselves_and_shares_add_up() {
    for (name, rgb) in FASHION_COLOURS {
        assert_eq!(name_of(rgb), name);
    }
    let img = render_shirt([0, 0, 128], [246, 246, 244], 1.0, 1);
    let got = extract(&img, &ColourConfig::default());
    let sum: f32 = got.iter().map(|c| c.percentage).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{got:?}");
    // Nothing but background: no garment colours.
    let blank = RgbImage::from_pixel(64, 64, image::Rgb([240, 240, 240]));
    assert!(extract(&blank, &ColourConfig::default()).is_empty());
}

/// A 200x240 flat-lay: background, T-shirt body and sleeves, light gradient, folds, noise.
fn render_shirt(colour: [u8; 3], bg: [u8; 3], light: f32, seed: u32) -> RgbImage {
    let mut rng = seed.wrapping_mul(2_654_435_761).max(1);
    let mut noise = move |amp: f32| {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        ((rng % 1000) as f32 / 1000.0 - 0.5) * 2.0 * amp
    };
    let (w, h) = (200u32, 240u32);
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let body = (55.0..145.0).contains(&fx) && (50.0..215.0).contains(&fy);
        let sleeves = (20.0..180.0).contains(&fx)
            && (50.0..100.0).contains(&fy)
            && (fy - 50.0) > (fx - 100.0).abs() * 0.35 - 20.0;
        let neck = (fx - 100.0).powi(2) + (fy - 48.0).powi(2) < 18.0f32.powi(2);
        let on_garment = (body || sleeves) && !neck;
        let (base, shade) = if on_garment {
            let gradient = 1.04 - 0.08 * fy / h as f32;
            let fold = if ((fx - 70.0) / 9.0).sin() > 0.92 {
                0.9
            } else {
                1.0
            };
            (colour, light * gradient * fold)
        } else {
            (bg, 1.0)
        };
        let mut px = |c: u8| (f32::from(c) * shade + noise(5.0)).clamp(0.0, 255.0) as u8;
        image::Rgb([px(base[0]), px(base[1]), px(base[2])])
    })
}

#[test]
fn the_foreground_box_is_the_garment_on_a_flat_lay() {
    let img = render_shirt([220, 20, 60], [246, 246, 244], 1.0, 3);
    let b = foreground_box(&img, 12.0, FOREGROUND_SIDE).expect("garment");
    // The silhouette spans x 20..180 (sleeves), y ~30..215 (body); allow the noise margin.
    assert!(
        (b[0] - 20.0).abs() <= 2.0 && (b[2] - 180.0).abs() <= 2.0,
        "{b:?}"
    );
    assert!(
        b[1] >= 28.0 && b[1] <= 52.0 && (b[3] - 215.0).abs() <= 2.0,
        "{b:?}"
    );
    let blank = RgbImage::from_pixel(64, 64, image::Rgb([240, 240, 240]));
    assert_eq!(foreground_box(&blank, 12.0, FOREGROUND_SIDE), None);
}

/// A large photo is sampled (every `step`-th pixel): its box is the garment's within one step.
#[test]
fn a_large_photo_gets_its_foreground_box_within_a_sampling_step() {
    let (x1, y1, x2, y2) = (333u32, 217u32, 1621u32, 1390u32);
    let big = RgbImage::from_fn(2000, 1500, |x, y| {
        if (x1..x2).contains(&x) && (y1..y2).contains(&y) {
            image::Rgb([30, 60, 160])
        } else {
            image::Rgb([246, 246, 244])
        }
    });
    let step = 2000u32.div_ceil(FOREGROUND_SIDE) as f32;
    assert!(step > 1.0);
    let b = foreground_box(&big, 12.0, FOREGROUND_SIDE).expect("garment");
    let want = [x1, y1, x2, y2].map(|v| v as f32);
    for i in 0..4 {
        assert!((b[i] - want[i]).abs() <= step, "{b:?} vs {want:?}");
    }
    // Every pixel: exact.
    assert_eq!(foreground_box(&big, 12.0, 0), Some(want));
}

#[test]
fn the_linear_light_table_is_the_formula() {
    for c in 0..=255u8 {
        assert_eq!(linear(c).to_bits(), linear_of(c).to_bits(), "{c}");
    }
}
