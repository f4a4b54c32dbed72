use super::*;
use object_store::ObjectStoreExt;

fn s3_location() -> Location {
    let s3 = S3Config {
        endpoint_url: Some("http://127.0.0.1:1".into()),
        allow_http: true,
        ..S3Config::default()
    };
    Location::open("s3://flashfit/uploads", &s3).expect("open")
}

#[test]
fn s3_uris_must_stay_in_the_bucket_and_prefix() {
    let loc = s3_location();
    assert_eq!(
        loc.resolve("s3://flashfit/uploads/u1/a.jpg")
            .expect("inside")
            .as_ref(),
        "uploads/u1/a.jpg"
    );
    for bad in [
        "s3://other/uploads/a.jpg",
        "s3://flashfit/private/a.jpg",
        "s3://flashfit/uploads/../private/a.jpg",
        // Mixed encodings of `..` (found by the property test below).
        "s3://flashfit/uploads/%2E./private/a.jpg",
        "s3://flashfit/uploads/.%2e/private/a.jpg",
        "s3://flashfit/uploads//a.jpg",
        "s3://flashfit/uploads",
        "s3://flashfit/uploadsX/a.jpg",
        "file:///etc/passwd",
        "http://flashfit/uploads/a.jpg",
        "s3://flashfit",
    ] {
        let err = loc.resolve(bad).expect_err(bad);
        assert!(matches!(err, Error::NotAllowed(_)), "{bad}: {err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn file_uris_must_stay_under_the_root() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("uploads");
    std::fs::create_dir_all(root.join("u1")).expect("mkdir");
    std::fs::write(root.join("u1/a.jpg"), b"jpeg bytes").expect("write");
    std::fs::write(dir.path().join("secret.txt"), b"secret").expect("write");
    let root_uri = url::Url::from_directory_path(&root)
        .expect("uri")
        .to_string();
    let loc = Location::open(&root_uri, &S3Config::default()).expect("open");

    let inside = format!("{root_uri}u1/a.jpg");
    assert_eq!(
        loc.fetch(&inside, 1024).await.expect("fetch").as_ref(),
        b"jpeg bytes"
    );
    assert_eq!(loc.uri_of(&loc.resolve(&inside).expect("resolve")), inside);

    let outside = url::Url::from_file_path(dir.path().join("secret.txt"))
        .expect("uri")
        .to_string();
    for bad in [
        outside.clone(),
        format!("{root_uri}../secret.txt"),
        format!("{root_uri}u1/%2e%2e/%2e%2e/secret.txt"),
        format!("{root_uri}u1/./a.jpg"),
        "s3://flashfit/uploads/a.jpg".to_owned(),
        "file://evil.example.com/etc/passwd".to_owned(),
        "/etc/passwd".to_owned(),
    ] {
        let err = loc.fetch(&bad, 1024).await.expect_err(&bad);
        assert!(matches!(err, Error::NotAllowed(_)), "{bad}: {err}");
    }

    let missing = format!("{root_uri}u1/missing.jpg");
    assert!(matches!(
        loc.fetch(&missing, 1024).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        loc.fetch(&inside, 4).await,
        Err(Error::TooLarge {
            size: 10,
            max: 4,
            ..
        })
    ));
}

#[tokio::test]
async fn child_paths_round_trip_through_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = url::Url::from_directory_path(dir.path())
        .expect("uri")
        .to_string();
    let loc = Location::open(&uri, &S3Config::default()).expect("open");
    let p = loc.child("t/x.bin").expect("child");
    loc.store()
        .put(&p, Bytes::from_static(b"abc").into())
        .await
        .expect("put");
    assert_eq!(
        loc.fetch(&loc.uri_of(&p), 10).await.expect("get").as_ref(),
        b"abc"
    );
}

#[tokio::test]
async fn an_unreachable_store_is_a_retryable_error() {
    let loc = s3_location();
    let err = loc
        .fetch("s3://flashfit/uploads/a.jpg", 10)
        .await
        .expect_err("no server");
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn relative_file_locations_resolve_against_the_working_directory() {
    let loc = Location::open(
        "file://./target/flashfit-storage-test",
        &S3Config::default(),
    )
    .expect("open");
    let cwd = std::env::current_dir().expect("cwd");
    assert!(loc.uri().starts_with("file://./"));
    let inside =
        url::Url::from_file_path(cwd.join("target/flashfit-storage-test/x.jpg")).expect("uri");
    let canonical_inside = url::Url::from_file_path(
        cwd.join("target/flashfit-storage-test")
            .canonicalize()
            .expect("dir")
            .join("x.jpg"),
    )
    .expect("uri");
    assert!(loc.resolve(inside.as_str()).is_ok() || loc.resolve(canonical_inside.as_str()).is_ok());
    // Image URIs themselves must be absolute.
    assert!(
        loc.resolve("file://target/flashfit-storage-test/x.jpg")
            .is_err()
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    /// Path segments an attacker would try, and ordinary ones.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2E.".to_owned()),
            Just("".to_owned()),
            Just("uploads".to_owned()),
            Just("flashfit".to_owned()),
            Just("other".to_owned()),
            Just("a\\b".to_owned()),
            Just("é👕".to_owned()),
            "[a-z0-9._-]{1,8}",
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(), 1..6).prop_map(|s| s.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Issue 13: whatever the URI, `resolve` either refuses it or names an object strictly
        /// inside the location's prefix, and never one reached through `..`.
        #[test]
        fn s3_uris_resolve_inside_the_prefix_or_not_at_all(bucket in prop_oneof![Just("flashfit"), Just("other")], k in key()) {
            let loc = s3_location();
            let uri = format!("s3://{bucket}/{k}");
            if let Ok(p) = loc.resolve(&uri) {
                prop_assert!(p.prefix_matches(loc.prefix()) && p != *loc.prefix(), "{uri} → {p}");
                prop_assert_eq!(bucket, "flashfit");
                let dots = |s: &str| matches!(s.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | "..");
                prop_assert!(!k.split('/').any(dots), "{}", uri);
            }
        }

        #[test]
        fn file_uris_resolve_under_the_root_or_not_at_all(k in key()) {
            let dir = tempfile::tempdir().expect("tmp");
            let root = dir.path().join("root");
            std::fs::create_dir_all(&root).expect("mkdir");
            let loc = Location::open(&format!("file://{}", root.display()), &S3Config::default()).expect("open");
            let uri = format!("file://{}/{k}", root.display());
            if let Ok(p) = loc.resolve(&uri) {
                let full = root.join(p.as_ref());
                prop_assert!(full.starts_with(&root) && full != root, "{uri} → {}", full.display());
                prop_assert!(!k.split('/').any(|s| s == ".."), "{}", uri);
            }
        }
    }
}
