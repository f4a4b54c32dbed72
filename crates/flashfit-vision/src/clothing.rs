//! Is it clothing, and how sure is the category: the classify stage's two calibrated
//! decisions, pure functions of the model outputs and the detect stage's record.
//!
//! `is_clothing` is a logistic model over four signals ([`ClothingEvidence`]): the classifier's
//! clothing mass on the garment crop (as a log-odds), and the most confident person, garment and
//! other detection of the detect stage. Its coefficients ([`CALIBRATION`]) were fitted on the
//! labelled set (`eval/labels.toml`, `eval/calibrate.py` over `flashfit eval --json`); the
//! README quotes what they give there.

use flashfit_schema::record::{ClothingEvidence, Detection, Level, Role};
use flashfit_schema::taxonomy;

/// Coefficients of the `is_clothing` logistic model: bias, then one per signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub bias: f32,
    /// Per unit of ln(mass / (1 - mass)), the mass clamped to 1e-4..1-1e-4.
    pub mass_logit: f32,
    /// Per unit of the ImageNet mass's log-odds (clamped alike).
    pub imagenet_logit: f32,
    pub person: f32,
    pub garment: f32,
    pub other: f32,
}

/// Fitted on the labelled set by `eval/calibrate.py` (L2 C = 10; see the module docs). There,
/// at `clothing_threshold` 0.6: 100% of 25 non-clothing photos rejected and 3.4% of 58
/// clothing photos (two people photos), in-sample and leave-one-out alike. The person
/// detection weighs most: the head was trained on product shots, not on people.
pub const CALIBRATION: Calibration = Calibration {
    bias: 1.688,
    mass_logit: 0.453,
    imagenet_logit: 0.473,
    person: 7.693,
    garment: 0.159,
    other: 0.190,
};

/// The evidence for one garment: the classifier's `mass`, the ImageNet map's, and the
/// record's detections.
pub fn evidence(
    mass: f32,
    imagenet: Option<f32>,
    detection: Option<&Detection>,
) -> ClothingEvidence {
    let best = |role: Role| {
        detection.map_or(0.0, |d| {
            d.all
                .iter()
                .filter(|o| o.role == role)
                .map(|o| o.confidence)
                .fold(0f32, f32::max)
        })
    };
    ClothingEvidence {
        mass: mass.clamp(0.0, 1.0),
        imagenet: imagenet.unwrap_or(0.0).clamp(0.0, 1.0),
        person: best(Role::Person),
        garment: best(Role::Garment),
        other: best(Role::Other),
    }
}

impl Calibration {
    /// The calibrated probability that the photo shows clothing.
    pub fn is_clothing(&self, e: &ClothingEvidence) -> f32 {
        let logit = |p: f32| {
            let p = p.clamp(1e-4, 1.0 - 1e-4);
            (p / (1.0 - p)).ln()
        };
        let z = self.bias
            + self.mass_logit * logit(e.mass)
            + self.imagenet_logit * logit(e.imagenet)
            + self.person * e.person
            + self.garment * e.garment
            + self.other * e.other;
        1.0 / (1.0 + (-z).exp())
    }
}

/// What the classifier says, as specifically as it is sure.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub label: String,
    pub group: Option<&'static str>,
    pub level: Level,
}

/// The best category when its confidence reaches `category_threshold`; else the best group
/// when its probability reaches `group_threshold`; else unknown.
pub fn answer(
    best: &str,
    confidence: f32,
    (group, group_p): (&'static str, f32),
    category_threshold: f32,
    group_threshold: f32,
) -> Answer {
    if confidence >= category_threshold
        && let Some(g) = taxonomy::group(best)
    {
        return Answer {
            label: best.to_owned(),
            group: Some(g),
            level: Level::Category,
        };
    }
    if group_p >= group_threshold {
        return Answer {
            label: group.to_owned(),
            group: Some(group),
            level: Level::Group,
        };
    }
    Answer {
        label: taxonomy::UNKNOWN.to_owned(),
        group: None,
        level: Level::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashfit_schema::record::{DetectedObject, DetectionSource};

    fn detection(objects: &[(Role, f32)]) -> Detection {
        Detection {
            class: "x".into(),
            confidence: None,
            bbox: [0.0, 0.0, 1.0, 1.0],
            source: DetectionSource::FullImage,
            model: None,
            all: objects
                .iter()
                .map(|&(role, confidence)| DetectedObject {
                    class: "c".into(),
                    confidence,
                    bbox: [0.0, 0.0, 1.0, 1.0],
                    model: "m".into(),
                    role,
                })
                .collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn evidence_takes_the_most_confident_detection_of_each_role() {
        let d = detection(&[
            (Role::Person, 0.4),
            (Role::Person, 0.8),
            (Role::Garment, 0.3),
            (Role::Other, 0.6),
        ]);
        let e = evidence(0.2, Some(0.1), Some(&d));
        assert_eq!(
            (e.person, e.garment, e.other, e.imagenet),
            (0.8, 0.3, 0.6, 0.1)
        );
        let e = evidence(2.0, None, None);
        assert_eq!(
            (e.mass, e.imagenet, e.person, e.garment, e.other),
            (1.0, 0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn calibration_rises_with_clothing_signals() {
        let c = CALIBRATION;
        let base = ClothingEvidence {
            mass: 0.01,
            imagenet: 0.01,
            person: 0.0,
            garment: 0.0,
            other: 0.0,
        };
        let p = c.is_clothing(&base);
        assert!(p < 0.5, "no signal is not clothing: {p}");
        assert!(c.is_clothing(&ClothingEvidence { mass: 0.2, ..base }) > p);
        assert!(c.is_clothing(&ClothingEvidence { mass: 0.99, ..base }) > 0.5);
        assert!(
            c.is_clothing(&ClothingEvidence {
                imagenet: 0.2,
                ..base
            }) > p
        );
        let person = c.is_clothing(&ClothingEvidence {
            person: 0.6,
            ..base
        });
        assert!(person > 0.5, "a detected person wears clothes: {person}");
        let q = c.is_clothing(&ClothingEvidence {
            mass: 0.0,
            imagenet: 0.0,
            ..base
        });
        assert!(q.is_finite() && (0.0..=1.0).contains(&q));
    }

    #[test]
    fn unsure_answers_fall_back_to_the_group_then_unknown() {
        let a = answer("jeans", 0.8, ("bottoms", 0.9), 0.6, 0.5);
        assert_eq!((a.label.as_str(), a.level), ("jeans", Level::Category));
        let a = answer("jeans", 0.4, ("bottoms", 0.7), 0.6, 0.5);
        assert_eq!(
            (a.label.as_str(), a.group, a.level),
            ("bottoms", Some("bottoms"), Level::Group)
        );
        let a = answer("jeans", 0.3, ("bottoms", 0.4), 0.6, 0.5);
        assert_eq!(
            (a.label.as_str(), a.group, a.level),
            ("unknown", None, Level::Unknown)
        );
    }
}
