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

#[test]
fn shades_are_named_as_sold_and_dark_or_shaded_garments_keep_their_hue() {
    for (name, rgb) in SHADES {
        assert_eq!(name_of(rgb), name, "{rgb:?}");
    }
    // Measured on the labelled set's photos: dark denim, the astronaut's suit, a camel coat
    // in shadow, a black jacket.
    for (rgb, name) in [
        ([11, 22, 46], "navy"),
        ([204, 91, 57], "orange"),
        ([155, 131, 110], "tan"),
        ([8, 9, 27], "black"),
        ([40, 40, 40], "black"),
    ] {
        assert_eq!(name_of(rgb), name, "{rgb:?}");
    }
}

#[test]
fn skin_of_every_complexion_is_skin_and_garment_colours_are_not() {
    for rgb in [
        [255, 224, 196],
        [234, 192, 134],
        [198, 134, 66],
        [141, 85, 36],
        [92, 51, 23],
    ] {
        assert!(is_skin(rgb), "{rgb:?}");
    }
    for rgb in [
        [204, 91, 57],   // the astronaut's suit
        [0, 0, 0],       // black
        [20, 30, 110],   // navy
        [250, 250, 250], // white
        [128, 128, 128], // grey
        [30, 140, 50],   // green
        [200, 30, 40],   // red
    ] {
        assert!(!is_skin(rgb), "{rgb:?}");
    }
}

#[test]
fn a_minority_of_skin_is_dropped_and_a_skin_coloured_garment_is_kept() {
    const SKIN: [u8; 3] = [198, 134, 66];
    // Left 30% arm, the rest a navy top.
    let worn = RgbImage::from_fn(100, 100, |x, _| {
        image::Rgb(if x < 30 { SKIN } else { [20, 30, 110] })
    });
    let all = |img: RgbImage| GarmentPixels {
        mask: vec![true; (img.width() * img.height()) as usize],
        img,
    };
    let gp = without_skin(all(worn), 0.7);
    assert_eq!(gp.count(), 70 * 100);
    assert_eq!(extract_from(&gp, 3).first().map(|c| c.name), Some("navy"));
    // A tan top with a little navy trim: skin tones are most of it, nothing is dropped.
    let tan = RgbImage::from_fn(100, 100, |x, _| {
        image::Rgb(if x < 90 {
            [210, 170, 120]
        } else {
            [20, 30, 110]
        })
    });
    let gp = without_skin(all(tan), 0.7);
    assert_eq!(gp.count(), 100 * 100);
    assert_eq!(extract_from(&gp, 3).first().map(|c| c.name), Some("tan"));
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

/// A fixture photo.
fn photo(name: &str) -> RgbImage {
    image::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/photos")
            .join(name),
    )
    .expect("photo")
    .to_rgb8()
}

/// A `w`×`h` image of xorshift noise (every rounding case, no structure).
fn noise(w: u32, h: u32, mut seed: u32) -> RgbImage {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as u8
    };
    RgbImage::from_fn(w, h, |_, _| image::Rgb([next(), next(), next()]))
}

/// k-means as first written (seeding recomputed every distance per comparison, all 20 rounds
/// run): the faster one must give exactly its centres and assignments.
fn kmeans_reference(points: &[[f32; 3]], k: usize, iters: usize) -> (Vec<[f32; 3]>, Vec<usize>) {
    let near = |p: &[f32; 3], centres: &[[f32; 3]]| {
        centres
            .iter()
            .map(|c| dist2(*p, *c))
            .fold(f32::MAX, f32::min)
    };
    let mut centres = vec![points[0]];
    while centres.len() < k {
        let far = points
            .iter()
            .max_by(|a, b| near(a, &centres).total_cmp(&near(b, &centres)))
            .copied()
            .unwrap_or(points[0]);
        centres.push(far);
    }
    let mut assign = vec![0usize; points.len()];
    for _ in 0..iters {
        for (a, p) in assign.iter_mut().zip(points) {
            *a = (0..centres.len())
                .min_by(|i, j| dist2(*p, centres[*i]).total_cmp(&dist2(*p, centres[*j])))
                .unwrap_or(0);
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

/// Same centres and assignments as the reference, bit for bit, on photo pixels (ties and
/// duplicates included) and on a few clustered or degenerate sets, for every k used.
#[test]
fn kmeans_gives_exactly_the_reference_clusters() {
    let small = shrink(&photo("person_suit.jpg"), 160);
    let from_photo: Vec<[f32; 3]> = small.pixels().map(|p| lab(p.0)).collect();
    let noise: Vec<[f32; 3]> = noise(60, 50, 0x9e37_79b9)
        .pixels()
        .map(|p| p.0.map(|v| f32::from(v) / 2.55))
        .collect();
    let two_blobs: Vec<[f32; 3]> = (0..500)
        .map(|i| {
            if i % 3 == 0 {
                [20.0, 5.0, 5.0]
            } else {
                [70.0, -10.0, 30.0]
            }
        })
        .collect();
    let one_colour = vec![[50.0, 0.0, 0.0]; 64];
    for points in [&from_photo, &noise, &two_blobs, &one_colour] {
        for k in 1..=8 {
            let (c, a) = kmeans(points, k, 20);
            let (rc, ra) = kmeans_reference(points, k, 20);
            assert_eq!(a, ra, "assignments, k {k}");
            let bits = |v: &[[f32; 3]]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&c), bits(&rc), "centres, k {k}");
        }
    }
}

/// Shrinking a region read in place gives exactly image's `thumbnail` of the region copied
/// out, for photos and noise, odd regions and sizes, boxes under `max_side` (kept as they are).
#[test]
fn shrinking_a_region_is_images_thumbnail_of_it() {
    let photo = photo("motorcycle.jpg");
    let noise = noise(333, 217, 0x1234_5678);
    for img in [&photo, &noise] {
        let (w, h) = img.dimensions();
        for region in [
            (0, 0, w, h),
            (13, 7, w / 2 + 3, h / 3 + 1),
            (5, 9, 161, 40),
            (1, 1, 3, 2),
        ] {
            for max_side in [160, 97, 512, 1] {
                let (x, y, rw, rh) = region;
                let copy = image::imageops::crop_imm(img, x, y, rw, rh).to_image();
                let scale = (f64::from(max_side) / f64::from(rw.max(rh))).min(1.0);
                let (nw, nh) = (
                    ((f64::from(rw) * scale) as u32).max(1),
                    ((f64::from(rh) * scale) as u32).max(1),
                );
                assert_eq!(
                    shrink_region(img, region, max_side),
                    image::imageops::thumbnail(&copy, nw, nh),
                    "{region:?} to {max_side}"
                );
            }
        }
    }
    // Enlarging takes image's own path: still its thumbnail.
    assert!(thumbnail_blocks(&noise, (0, 0, 3, 2), 7, 5).is_none());
}
