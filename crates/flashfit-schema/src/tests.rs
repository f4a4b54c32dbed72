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
            "not_clothing",
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
fn a_garment_record_round_trips_and_keeps_unknown_fields() {
    let upload = UploadEvent::from_json(GOOD.as_bytes()).expect("valid");
    let mut rec = GarmentRecord::new(upload);
    rec.quality = Some(QualityReport {
        width: 640,
        height: 480,
        blur_score: 123.5,
        brightness: 100.25,
        warnings: vec![Warning::Blurry],
        extra: Default::default(),
    });
    let v = serde_json::to_value(&rec).expect("ser");
    assert_eq!(v["event_id"], "e1");
    assert_eq!(v["quality"]["warnings"][0], "blurry");
    assert!(v.get("processed_at").is_none() && v.get("detection").is_none());
    let back: GarmentRecord = serde_json::from_value(v).expect("de");
    assert_eq!(back, rec);
    // A later stage reads the record as an upload: the stage objects are ignored.
    let as_upload = UploadEvent::from_json(&rec.to_json()).expect("upload");
    assert_eq!(as_upload, rec.upload);

    // A newer producer's fields, at the top level and inside a stage's object, survive a
    // stage that does not know them.
    let newer = r#"{"event_id":"e1","user_id":"u1","garment_id":"g1","image_uri":"s3://b/a.jpg",
        "uploaded_at":"2026-11-22T09:00:00.000Z","tenant":"acme","processed_at":"2026-11-22T09:00:01.500Z",
        "classification":{"category":"jeans","group":"bottoms","confidence":0.5,"topk":[],
          "is_clothing":0.9,"flagged":false,"calibrated":{"t":1.5}},
        "models":[{"stage":"classify","name":"m","version":"2"}]}"#;
    let mut r = GarmentRecord::from_json(newer.as_bytes()).expect("newer record");
    assert_eq!(r.extra["tenant"], "acme");
    assert_eq!(r.category(), Some("jeans"));
    assert_eq!(r.model_versions(), "classify:m@2");
    r.models.push(record::ModelRef {
        stage: "attributes".into(),
        name: "rules".into(),
        version: "1".into(),
    });
    let out: serde_json::Value = serde_json::from_slice(&r.to_json()).expect("json");
    assert_eq!(out["tenant"], "acme");
    assert_eq!(out["classification"]["calibrated"]["t"], 1.5);
    assert_eq!(out["processed_at"], "2026-11-22T09:00:01.500Z");
    assert_eq!(out["models"].as_array().map(Vec::len), Some(2));
    // The upload's fields are still validated.
    let bad = newer.replace(r#""user_id":"u1""#, r#""user_id":"""#);
    assert!(GarmentRecord::from_json(bad.as_bytes()).is_err());
}

/// The JSON Schemas in `schemas/` are what other teams code against. They are derived from the
/// types: this test compares every file with its derivation (and rewrites them with
/// `FLASHFIT_BLESS=1`, for a reviewed change of the contract).
#[test]
fn schema_files_are_derived_from_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let bless = std::env::var_os("FLASHFIT_BLESS").is_some();
    let mut stale = Vec::new();
    for (file, schema) in json_schema::all() {
        let path = root.join(&file);
        let text = json_schema::file_text(&schema);
        if bless {
            std::fs::write(&path, &text).expect("write schema");
            continue;
        }
        let on_disk: Option<serde_json::Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if on_disk.as_ref() != Some(&schema) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ differs from the types for {stale:?}: run `FLASHFIT_BLESS=1 cargo test -p \
         flashfit-schema schema_files` and review the diff"
    );
}

/// What the derived schemas say matches what the types accept and write.
#[test]
fn derived_schemas_carry_the_contract() {
    let all: std::collections::BTreeMap<String, serde_json::Value> =
        json_schema::all().into_iter().collect();
    let props = |file: &str| -> Vec<String> {
        let mut k: Vec<String> = all[file]["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    let required = |file: &str| -> Vec<String> {
        let mut r: Vec<String> =
            serde_json::from_value(all[file]["required"].clone()).expect("required");
        r.sort();
        r
    };
    assert_eq!(
        required("flashfit.uploads.json"),
        [
            "event_id",
            "garment_id",
            "image_uri",
            "uploaded_at",
            "user_id"
        ]
    );
    let up = &all["flashfit.uploads.json"]["properties"];
    assert_eq!(up["event_id"]["minLength"], 1);
    assert_eq!(up["event_id"]["maxLength"], MAX_FIELD_LEN);
    assert_eq!(up["uploaded_at"]["format"], "date-time");
    // Every topic record passes unknown fields (none says additionalProperties: false).
    for (file, s) in &all {
        assert_ne!(s["additionalProperties"], false, "{file}");
    }
    assert!(required("flashfit.embedded.json").contains(&"embedding".to_owned()));
    assert!(!required("flashfit.detected.json").contains(&"classification".to_owned()));
    assert_eq!(
        props("flashfit.embedded.json"),
        props("flashfit.quality.json"),
        "one record type on every enrichment topic"
    );
    assert_eq!(
        required("flashfit.feedback.json"),
        ["event_id", "garment_ids", "signal", "ts", "user_id"]
    );
    assert_eq!(
        all["flashfit.feedback.json"]["properties"]["garment_ids"]["maxItems"],
        MAX_GARMENTS_PER_EVENT
    );
    assert_eq!(
        required("flashfit.kpi.json"),
        ["event_id", "ts", "type", "user_id"]
    );
    // Every field a status can carry (a split's garment ids are written only then).
    let mut status =
        StatusEvent::failed_from_raw(GOOD.as_bytes(), "quality", Reason::NotFound, "m");
    status.garment_ids = vec!["g1/top-1".into()];
    let written = serde_json::to_value(&status).expect("ser");
    let mut keys: Vec<String> = written.as_object().expect("obj").keys().cloned().collect();
    keys.sort();
    assert_eq!(props("flashfit.status.json"), keys);
    // Reason names in the schema are the stable names.
    let text = all["flashfit.status.json"].to_string();
    for r in Reason::ALL {
        assert!(text.contains(&format!("\"{}\"", r.as_str())), "{r}");
    }
    let dlq = required("flashfit.dlq.json");
    for h in [
        headers::ERROR_KIND,
        headers::ERROR_MESSAGE,
        headers::SOURCE_TOPIC,
        headers::SOURCE_PARTITION,
        headers::SOURCE_OFFSET,
        headers::STAGE,
        headers::WORKER_VERSION,
    ] {
        assert!(dlq.contains(&h.to_owned()), "{h}");
    }
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
fn feedback_and_kpi_events_parse_and_validate() {
    let good = r#"{"event_id":"f1","user_id":"u1","signal":"wear","garment_ids":["g1","g2"],
        "outfit_id":"o1","ts":"2026-11-22T10:00:00Z","app":"ios"}"#;
    let f = FeedbackEvent::from_json(good.as_bytes()).expect("valid");
    assert_eq!((f.signal, f.garment_ids.len()), (Signal::Wear, 2));
    for sig in Signal::ALL {
        let v = serde_json::to_value(sig).expect("ser");
        assert_eq!(v, sig.as_str());
    }
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

/// An event's own time may be at most the allowed clock skew (default five
/// minutes) ahead of now; beyond it, every event type that carries a time is invalid.
#[test]
fn events_from_the_future_are_invalid() {
    let ahead = |mins: i64| (chrono::Utc::now() + chrono::Duration::minutes(mins)).to_rfc3339();
    let upload = |at: String| {
        serde_json::to_vec(&serde_json::json!({"event_id": "e", "user_id": "u",
            "garment_id": "g", "image_uri": "s3://b/k.jpg", "uploaded_at": at}))
        .expect("json")
    };
    assert!(
        UploadEvent::from_json(&upload(ahead(2))).is_ok(),
        "within the skew"
    );
    let e = UploadEvent::from_json(&upload(ahead(60))).expect_err("an hour ahead");
    assert!(
        e.0.contains("uploaded_at") && e.0.contains("ahead"),
        "{e:?}"
    );
    assert!(UploadEvent::from_json(&upload("9999-01-01T00:00:00Z".into())).is_err());
    let feedback = serde_json::json!({"event_id": "e", "user_id": "u", "signal": "like",
        "garment_ids": ["g"], "ts": ahead(60)});
    let e = FeedbackEvent::from_json(&serde_json::to_vec(&feedback).expect("json"))
        .expect_err("feedback from the future");
    assert!(e.0.contains("`ts`"), "{e:?}");
    let delete = serde_json::json!({"event_id": "e", "user_id": "u", "garment_id": "g",
        "deleted_at": ahead(60)});
    assert!(DeleteEvent::from_json(&serde_json::to_vec(&delete).expect("json")).is_err());
    let kpi = serde_json::json!({"event_id": "e", "user_id": "u", "type": "click",
        "ts": ahead(60), "variants": {}});
    assert!(KpiEvent::from_json(&serde_json::to_vec(&kpi).expect("json")).is_err());
    let kpi_now = serde_json::json!({"event_id": "e", "user_id": "u", "type": "click",
        "ts": ahead(0), "variants": {}});
    assert!(KpiEvent::from_json(&serde_json::to_vec(&kpi_now).expect("json")).is_ok());
}

/// Hostile identifiers and sizes from producers: a user id with `/`, `..`, NUL or 2,048
/// bytes; a KPI event claiming 10,000 variants or out-of-range values; a 10 MiB feedback
/// event; a time before 2000. Each is refused with a message naming what is wrong.
#[test]
fn hostile_ids_values_and_sizes_are_refused_by_name() {
    let upload = |user: &str| {
        serde_json::to_vec(&serde_json::json!({"event_id": "e", "user_id": user,
            "garment_id": "g", "image_uri": "s3://b/k.jpg", "uploaded_at": "2026-11-22T10:00:00Z"}))
        .expect("json")
    };
    for user in [
        "a/b",
        "..",
        ".",
        "a\0b",
        "a\\b",
        "50%",
        &"u".repeat(2_048),
        &"u".repeat(256),
    ] {
        let e = UploadEvent::from_json(&upload(user)).expect_err(user);
        assert!(e.0.contains("user_id"), "{user:?}: {e}");
    }
    for user in [
        "u1",
        "auth0|5f7c8ec7c33c6c004bbafe82",
        "ana@example.com",
        &"u".repeat(255),
    ] {
        assert!(UploadEvent::from_json(&upload(user)).is_ok(), "{user}");
    }
    let feedback = |user: &str, ts: &str| {
        serde_json::to_vec(&serde_json::json!({"event_id": "e", "user_id": user,
            "signal": "like", "garment_ids": ["g"], "ts": ts}))
        .expect("json")
    };
    assert!(FeedbackEvent::from_json(&feedback("a/../b", "2026-11-22T10:00:00Z")).is_err());
    let old = FeedbackEvent::from_json(&feedback("u", "1970-01-01T00:00:00Z")).expect_err("1970");
    assert!(old.0.contains("2000"), "{old}");
    let mut huge = feedback("u", "2026-11-22T10:00:00Z");
    huge.truncate(huge.len() - 1);
    huge.extend(format!(r#","pad":"{}"}}"#, "x".repeat(10 << 20)).into_bytes());
    let e = FeedbackEvent::from_json(&huge).expect_err("10 MiB");
    assert!(e.0.contains("byte cap"), "{e}");
    let delete = serde_json::json!({"event_id": "e", "user_id": "u\0", "garment_id": "g",
        "deleted_at": "2026-11-22T10:00:00Z"});
    assert!(DeleteEvent::from_json(&serde_json::to_vec(&delete).expect("json")).is_err());

    let kpi = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"event_id": "k", "user_id": "u", "type": "rating",
            "ts": "2026-11-22T10:00:00Z", "value": 4.0});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        KpiEvent::from_json(&serde_json::to_vec(&v).expect("json"))
    };
    assert!(kpi(serde_json::json!({})).is_ok());
    let many: serde_json::Map<String, serde_json::Value> = (0..10_000)
        .map(|i| (format!("x{i}"), serde_json::json!("a")))
        .collect();
    // 10,000 variants do not fit the byte cap; 33 small ones do, and are too many.
    assert!(kpi(serde_json::json!({"variants": many})).is_err());
    let some: serde_json::Map<String, serde_json::Value> = (0..33)
        .map(|i| (format!("x{i}"), serde_json::json!("a")))
        .collect();
    let e = kpi(serde_json::json!({"variants": some})).expect_err("33 variants");
    assert!(e.0.contains("variants"), "{e}");
    for (extra, field) in [
        (serde_json::json!({"value": 1e300}), "value"),
        (serde_json::json!({"score": -5000.0}), "score"),
        (serde_json::json!({"rank": 0}), "rank"),
        (serde_json::json!({"rank": 100_000}), "rank"),
        (
            serde_json::json!({"type": "session_end", "duration_s": 1e9}),
            "duration_s",
        ),
        (serde_json::json!({"scorer": ""}), "scorer"),
        (serde_json::json!({"garment_ids": [""]}), "garment_ids"),
    ] {
        let e = kpi(extra.clone()).expect_err(field);
        assert!(e.0.contains(field), "{extra}: {e}");
    }
}
