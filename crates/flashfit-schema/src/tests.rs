use super::*;

const GOOD: &str = r#"{"event_id":"e1","user_id":"u1","garment_id":"g1",
  "image_uri":"s3://flashfit/uploads/a.jpg","uploaded_at":"2026-11-22T10:00:00+01:00","extra":42}"#;

#[test]
fn parses_a_valid_upload_and_ignores_unknown_fields() {
    let e = UploadEvent::from_json(GOOD.as_bytes()).expect("valid");
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.garment_id, "g1");
    assert_eq!(format_ts(e.uploaded_at), "2026-11-22T09:00:00.000Z");
}

#[test]
fn rejects_missing_empty_and_malformed_fields_naming_the_field() {
    let missing =
        r#"{"event_id":"e1","user_id":"u1","image_uri":"x","uploaded_at":"2026-11-22T10:00:00Z"}"#;
    let err = UploadEvent::from_json(missing.as_bytes()).expect_err("must be invalid");
    assert!(err.0.contains("garment_id"), "{err}");

    let empty = GOOD.replace(r#""user_id":"u1""#, r#""user_id":"  ""#);
    let err = UploadEvent::from_json(empty.as_bytes()).expect_err("must be invalid");
    assert!(err.0.contains("user_id"), "{err}");

    let bad_time = GOOD.replace("2026-11-22T10:00:00+01:00", "yesterday");
    assert!(UploadEvent::from_json(bad_time.as_bytes()).is_err());

    let not_utf8 = [0xff, 0xfe, 0x00];
    assert!(
        UploadEvent::from_json(&not_utf8)
            .expect_err("must be invalid")
            .0
            .contains("UTF-8")
    );

    assert!(UploadEvent::from_json(b"[1,2,3]").is_err());
    let wrong_type = GOOD.replace(r#""e1""#, "17");
    assert!(UploadEvent::from_json(wrong_type.as_bytes()).is_err());
}

#[test]
fn failed_status_recovers_identifiers_from_partial_input() {
    let raw = br#"{"event_id":"e9","garment_id":"g9","image_uri":42}"#;
    let s = StatusEvent::failed_from_raw(raw, "quality", Reason::InvalidEvent, "bad");
    assert_eq!(s.event_id.as_deref(), Some("e9"));
    assert_eq!(s.garment_id.as_deref(), Some("g9"));
    assert_eq!(s.user_id, None);
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.reasons, vec![Reason::InvalidEvent]);

    let garbage =
        StatusEvent::failed_from_raw(b"\x00\x01garbage", "quality", Reason::InvalidEvent, "x");
    assert_eq!(garbage.event_id, None);
}

#[test]
fn reason_and_warning_names_are_stable() {
    let names: Vec<String> = Reason::ALL
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .expect("ser")
                .as_str()
                .expect("str")
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "too_small",
            "undecodable",
            "too_large",
            "uri_not_allowed",
            "not_found",
            "invalid_event",
            "not_owner",
            "internal"
        ]
    );
    for r in Reason::ALL {
        assert_eq!(serde_json::to_value(r).expect("ser"), r.as_str());
    }
    assert_eq!(
        serde_json::to_value(Warning::TooDark).expect("ser"),
        "too_dark"
    );
    assert_eq!(
        serde_json::to_value(Warning::Blurry).expect("ser"),
        "blurry"
    );
    assert_eq!(
        serde_json::to_value(Warning::TooBright).expect("ser"),
        "too_bright"
    );
}

#[test]
fn quality_record_round_trips_with_flat_upload_fields() {
    let upload = UploadEvent::from_json(GOOD.as_bytes()).expect("valid");
    let rec = QualityRecord {
        upload,
        quality: QualityReport {
            width: 640,
            height: 480,
            blur_score: 123.5,
            brightness: 100.25,
            warnings: vec![Warning::Blurry],
        },
    };
    let v = serde_json::to_value(&rec).expect("ser");
    assert_eq!(v["event_id"], "e1");
    assert_eq!(v["quality"]["warnings"][0], "blurry");
    let back: QualityRecord = serde_json::from_value(v).expect("de");
    assert_eq!(back, rec);
    // A later stage reads the quality record as an upload: the extra object is ignored.
    let as_upload =
        UploadEvent::from_json(&serde_json::to_vec(&rec).expect("ser")).expect("upload");
    assert_eq!(as_upload, rec.upload);
}

/// The JSON Schemas in `schemas/` are what other teams code against: their property lists must
/// match what these types write.
#[test]
fn schemas_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let load = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(root.join(name)).expect("schema file");
        serde_json::from_str(&text).expect("schema is JSON")
    };
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };

    let upload = UploadEvent::from_json(GOOD.as_bytes()).expect("valid");
    let schema = load("flashfit.uploads.json");
    let mut required: Vec<String> =
        serde_json::from_value(schema["required"].clone()).expect("required");
    required.sort();
    assert_eq!(required, keys(&serde_json::to_value(&upload).expect("ser")));

    let status = StatusEvent::failed_from_raw(GOOD.as_bytes(), "quality", Reason::NotFound, "m");
    let schema = load("flashfit.status.json");
    assert_eq!(
        keys(&schema["properties"]),
        keys(&serde_json::to_value(&status).expect("ser"))
    );
    let enum_reasons: Vec<String> =
        serde_json::from_value(schema["properties"]["reasons"]["items"]["enum"].clone())
            .expect("enum");
    assert_eq!(enum_reasons.len(), Reason::ALL.len());

    let delete = DeleteEvent::from_json(GOOD_DELETE.as_bytes()).expect("valid delete");
    let schema = load("flashfit.deletes.json");
    let mut required: Vec<String> =
        serde_json::from_value(schema["required"].clone()).expect("required");
    required.sort();
    assert_eq!(required, keys(&serde_json::to_value(&delete).expect("ser")));
    assert_eq!(required, keys(&schema["properties"]));

    let schema = load("flashfit.quality.json");
    let rec = QualityRecord {
        upload,
        quality: QualityReport {
            width: 1,
            height: 1,
            blur_score: 0.0,
            brightness: 0.0,
            warnings: vec![],
        },
    };
    let v = serde_json::to_value(&rec).expect("ser");
    assert_eq!(
        keys(&schema["properties"]["quality"]["properties"]),
        keys(&v["quality"])
    );
}

const GOOD_DELETE: &str = r#"{"event_id":"d1","user_id":"u1","garment_id":"g1",
    "deleted_at":"2026-11-22T08:00:00+01:00","extra":true}"#;

#[test]
fn delete_events_parse_and_reject_bad_fields_by_name() {
    let d = DeleteEvent::from_json(GOOD_DELETE.as_bytes()).expect("valid");
    assert_eq!(d.garment_id, "g1");
    assert_eq!(format_ts(d.deleted_at), "2026-11-22T07:00:00.000Z");
    let empty = GOOD_DELETE.replace(r#""garment_id":"g1""#, r#""garment_id":" ""#);
    let err = DeleteEvent::from_json(empty.as_bytes()).expect_err("empty id");
    assert!(err.0.contains("garment_id"), "{err}");
    let missing = GOOD_DELETE.replace(r#""user_id":"u1","#, "");
    let err = DeleteEvent::from_json(missing.as_bytes()).expect_err("missing user");
    assert!(err.0.contains("user_id"), "{err}");
    assert!(DeleteEvent::from_json(b"not json").is_err());
}

#[test]
fn the_taxonomy_has_47_unique_categories_in_six_groups() {
    let mut names: Vec<&str> = taxonomy::CATEGORIES.iter().map(|(_, c)| *c).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 47);
    let mut groups: Vec<&str> = taxonomy::CATEGORIES.iter().map(|(g, _)| *g).collect();
    groups.dedup();
    assert_eq!(
        groups,
        [
            "tops",
            "bottoms",
            "outerwear",
            "dresses",
            "footwear",
            "accessories"
        ]
    );
    assert_eq!(taxonomy::group("cardigan"), Some("tops"));
    assert_eq!(taxonomy::index("bag"), Some(46));
    assert_eq!(taxonomy::index("cape"), None);
}

#[test]
fn feedback_and_kpi_events_parse_validate_and_match_their_schemas() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let load = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(name)).expect("file"))
            .expect("json")
    };
    let sorted = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = match v {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        k.sort();
        k
    };

    let good = r#"{"event_id":"f1","user_id":"u1","signal":"wear","garment_ids":["g1","g2"],
        "outfit_id":"o1","ts":"2026-11-22T10:00:00Z","app":"ios"}"#;
    let f = FeedbackEvent::from_json(good.as_bytes()).expect("valid");
    assert_eq!((f.signal, f.garment_ids.len()), (Signal::Wear, 2));
    let schema = load("flashfit.feedback.json");
    assert_eq!(
        sorted(&schema["properties"]),
        sorted(&serde_json::to_value(&f).expect("ser"))
    );
    let signals: Vec<String> =
        serde_json::from_value(schema["properties"]["signal"]["enum"].clone()).expect("enum");
    assert_eq!(signals, Signal::ALL.map(|s| s.as_str().to_owned()).to_vec());
    for (bad, field) in [
        (
            good.replace(r#""signal":"wear""#, r#""signal":"love""#),
            "unknown variant `love`",
        ),
        (good.replace(r#"["g1","g2"]"#, "[]"), "garment_ids"),
        (good.replace(r#""user_id":"u1","#, ""), "user_id"),
        (
            good.replace(r#""outfit_id":"o1""#, r#""outfit_id":"""#),
            "outfit_id",
        ),
    ] {
        let err = FeedbackEvent::from_json(bad.as_bytes()).expect_err(field);
        assert!(err.0.contains(field), "{field}: {err}");
    }

    let kpi = r#"{"event_id":"k1","user_id":"u1","type":"session_end","ts":"2026-11-22T10:00:00Z",
        "variants":{"outfit_scorer":"treatment"},"duration_s":42.5}"#;
    let k = KpiEvent::from_json(kpi.as_bytes()).expect("valid");
    assert_eq!(k.kind, KpiType::SessionEnd);
    assert_eq!(k.variants["outfit_scorer"], "treatment");
    let schema = load("flashfit.kpi.json");
    let mut full = serde_json::to_value(&k).expect("ser");
    full["value"] = 1.0.into();
    full["outfit_id"] = "o".into();
    full["garment_ids"] = serde_json::json!(["g"]);
    assert_eq!(sorted(&schema["properties"]), sorted(&full));
    assert_eq!(
        sorted(&schema["required"]),
        vec!["event_id", "ts", "type", "user_id"]
    );
    let no_duration = kpi.replace(r#","duration_s":42.5"#, "");
    assert!(KpiEvent::from_json(no_duration.as_bytes()).is_err());
    let rating = kpi.replace("session_end", "rating");
    assert!(
        KpiEvent::from_json(rating.as_bytes())
            .expect_err("no value")
            .0
            .contains("value")
    );
    let click = kpi
        .replace("session_end", "click")
        .replace(r#","duration_s":42.5"#, "");
    assert!(KpiEvent::from_json(click.as_bytes()).is_ok());
}

#[test]
fn stage_names_are_one_vocabulary_for_serde_the_cli_and_topics() {
    use clap::ValueEnum;
    for s in crate::StageName::ALL {
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(json, format!("\"{}\"", s.as_str()));
        assert_eq!(s.as_str().parse::<crate::StageName>(), Ok(s));
        let cli = s.to_possible_value().expect("value");
        assert_eq!(cli.get_name(), s.as_str());
        assert_eq!(
            s.is_enrichment(),
            s.as_str() != "parquet"
                && s.as_str() != "lance"
                && s.as_str() != "feedback"
                && s.as_str() != "kpi"
        );
    }
    assert!(
        "nope"
            .parse::<crate::StageName>()
            .expect_err("unknown")
            .contains("known: quality")
    );
    let t = crate::Topics::new("p.");
    assert_eq!(
        t.output_of(crate::StageName::Embed).as_deref(),
        Some("p.flashfit.embedded")
    );
    assert_eq!(t.output_of(crate::StageName::Parquet), None);
}
