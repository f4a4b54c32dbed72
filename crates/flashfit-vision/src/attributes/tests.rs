//! Pattern and rule tests on rendered garments (a shirt-shaped region on a plain background).

use image::{Rgb, RgbImage};

use super::*;

const BG: Rgb<u8> = Rgb([245, 245, 245]);

/// A 240x240 photo whose garment (a 160x180 rectangle) is painted by `paint(x, y)` in
/// garment-local coordinates.
fn garment(paint: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
    RgbImage::from_fn(240, 240, |x, y| {
        if (40..200).contains(&x) && (30..210).contains(&y) {
            Rgb(paint(x - 40, y - 30))
        } else {
            BG
        }
    })
}

fn pattern_of(img: &RgbImage) -> (String, Texture) {
    let a = Attributes {
        config: AttributesConfig::default(),
        mask: None,
        tagger: None,
    };
    let t = a
        .tag(Pending {
            category: "t_shirt".into(),
            small: crate::colour::shrink(img, a.config.max_side),
            worn: None,
            skinless: false,
            tagger_input: None,
        })
        .expect("tag");
    let gp = crate::colour::garment_pixels(img, &a.colour_config(), None);
    (t.pattern, texture(&gp, a.config.pattern.edge_magnitude))
}

const NAVY: [u8; 3] = [20, 30, 110];
const RED: [u8; 3] = [200, 30, 40];
const WHITE: [u8; 3] = [250, 250, 250];
const YELLOW: [u8; 3] = [240, 200, 30];
const GREEN: [u8; 3] = [30, 140, 50];

#[test]
fn rendered_patterns_get_their_names() {
    let cases: Vec<(&str, RgbImage)> = vec![
        ("solid", garment(|_, _| NAVY)),
        (
            "striped",
            garment(|_, y| if (y / 12) % 2 == 0 { NAVY } else { WHITE }),
        ),
        (
            "striped",
            garment(|x, _| if (x / 10) % 2 == 0 { RED } else { WHITE }),
        ),
        (
            "checkered",
            garment(|x, y| {
                if ((x / 20) + (y / 20)) % 2 == 0 {
                    NAVY
                } else {
                    WHITE
                }
            }),
        ),
        (
            "plaid",
            garment(|x, y| match ((x / 16) % 3, (y / 16) % 3) {
                (0, _) | (_, 0) => RED,
                (1, 1) => GREEN,
                _ => NAVY,
            }),
        ),
        (
            "graphic",
            garment(|x, y| {
                let (dx, dy) = (x as i32 - 80, y as i32 - 90);
                if dx.abs() < 30 && dy.abs() < 30 && ((dx / 6 + dy / 6) % 2 == 0) {
                    YELLOW
                } else {
                    NAVY
                }
            }),
        ),
        (
            "floral",
            garment(|x, y| {
                // Petals: circles of three colours on a green field, at scattered centres.
                let centres = [
                    (20, 25),
                    (70, 40),
                    (125, 30),
                    (40, 95),
                    (100, 100),
                    (140, 150),
                    (30, 160),
                    (85, 160),
                ];
                for (i, (cx, cy)) in centres.iter().enumerate() {
                    let (dx, dy) = (x as i32 - cx, y as i32 - cy);
                    if dx * dx + dy * dy < 20 * 20 {
                        return [RED, YELLOW, WHITE][i % 3];
                    }
                }
                GREEN
            }),
        ),
    ];
    for (want, img) in cases {
        let (got, t) = pattern_of(&img);
        assert_eq!(got, want, "{t:?}");
    }
}

#[test]
fn rule_tables_give_formality_fit_seasons_and_style() {
    let c = AttributesConfig::default();
    let navy = || ColourShare {
        name: "navy",
        rgb: NAVY,
        percentage: 0.9,
    };
    let t = rules(&c, "suit_jacket", vec![navy()], "solid", "border");
    assert_eq!(t.formality, 1.0); // 0.95 + navy 0.1, clamped
    assert_eq!(t.fit, "slim");
    assert!(
        t.style_tags.contains(&"formal".to_string()),
        "{:?}",
        t.style_tags
    );
    assert!(t.style_tags.contains(&"classic".to_string()));
    assert!(!t.style_tags.contains(&"casual".to_string()));
    let t = rules(
        &c,
        "hoodie",
        vec![ColourShare {
            name: "orange",
            rgb: [250, 140, 0],
            percentage: 1.0,
        }],
        "graphic",
        "border",
    );
    assert_eq!(t.formality, 0.0);
    assert_eq!(t.seasons, vec!["spring", "fall", "winter"]);
    for tag in ["casual", "athletic", "streetwear", "trendy"] {
        assert!(
            t.style_tags.contains(&tag.to_string()),
            "{tag} not in {:?}",
            t.style_tags
        );
    }
    // Unknown category: group default, then 0.5; all seasons; regular fit.
    let t = rules(&c, "", Vec::new(), "solid", "border");
    assert_eq!(
        (t.formality, t.fit.as_str(), t.seasons.len()),
        (0.5, "regular", 4)
    );
}
