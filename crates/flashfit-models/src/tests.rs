//! Golden tests: the Rust wrapper on the same ONNX file and pixels as Python onnxruntime
//! (`models/make_golden.py`). Needs `bash models/fetch.sh` (infra/test.sh runs it).

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn golden() -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixtures().join("models/efficientnet-lite0.json")).expect("golden");
    serde_json::from_str(&text).expect("json")
}

fn model() -> ImageNetModel {
    ImageNetModel::load(&ModelDir::from_env(), 1).unwrap_or_else(|e| panic!("{e}"))
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("num") as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn outputs_match_python_onnxruntime_on_the_same_pixels() {
    let g = golden();
    let m = model();
    let images = g["images"].as_object().expect("images");
    let names: Vec<&String> = images.keys().collect();
    let batch: Vec<Vec<f32>> = names
        .iter()
        .map(|n| {
            let png = fixtures()
                .join("models")
                .join(images[*n]["input_png"].as_str().expect("png"));
            chw_normalised(&image::open(png).expect("png").to_rgb8())
        })
        .collect();
    let outs = m.infer(&batch).expect("infer");
    assert_eq!(outs.len(), names.len());
    for (name, out) in names.iter().zip(&outs) {
        let want = &images[*name];
        let logits = floats(&want["logits"]);
        let emb = floats(&want["embedding"]);
        let max_logit_diff = max_abs_diff(&out.logits, &logits);
        let max_emb_diff = max_abs_diff(&out.embedding, &emb);
        assert!(
            max_logit_diff < 1e-3,
            "{name}: logits differ by {max_logit_diff}"
        );
        assert!(
            max_emb_diff < 1e-3,
            "{name}: embedding differs by {max_emb_diff}"
        );
        let top5: Vec<u64> = want["top5"]
            .as_array()
            .expect("top5")
            .iter()
            .map(|v| v.as_u64().expect("u64"))
            .collect();
        let ours: Vec<u64> = out.top_k(5).iter().map(|(i, _)| *i as u64).collect();
        // Same ranking, except where two classes' reference logits are within the tolerance
        // (last-bit differences between CPUs may swap a near-tie).
        for (rank, (o, w)) in ours.iter().zip(&top5).enumerate() {
            let gap = (logits[*o as usize] - logits[*w as usize]).abs();
            assert!(
                o == w || gap < 1e-3,
                "{name}: rank {rank} is class {o}, reference {w} (logit gap {gap})"
            );
        }
    }
    // The labels make sense on real photos.
    let coffee = names
        .iter()
        .position(|n| n.as_str() == "coffee.jpg")
        .expect("coffee");
    assert_eq!(m.label(outs[coffee].top_k(1)[0].0), "espresso");
}

/// Rust's resize + crop against OpenCV's `INTER_LINEAR` pipeline: same top class, embeddings
/// with cosine similarity above 0.999 (seen: 0.9997-0.9999).
#[test]
fn rust_preprocessing_agrees_with_the_opencv_pipeline() {
    let g = golden();
    let m = model();
    for (name, want) in g["images"].as_object().expect("images") {
        let img = image::open(fixtures().join("photos").join(name))
            .expect("photo")
            .to_rgb8();
        let out = m
            .infer(&[preprocess_imagenet(&img)])
            .expect("infer")
            .remove(0);
        assert_eq!(
            out.top_k(1)[0].0 as u64,
            want["top5"][0].as_u64().expect("top1"),
            "{name}"
        );
        let c = cosine(&out.embedding, &floats(&want["embedding"]));
        assert!(c > 0.999, "{name}: cosine {c}");
    }
}

#[test]
fn wrong_input_sizes_are_errors() {
    let m = model();
    let err = m.infer(&[vec![0.0; 10]]).expect_err("bad size");
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    assert!(m.infer(&[]).expect("empty").is_empty());
}

#[test]
fn a_missing_model_names_the_fix() {
    let dir = ModelDir::new("/nonexistent/flashfit-models");
    let err = ImageNetModel::load(&dir, 1).expect_err("missing");
    assert!(err.to_string().contains("models/fetch.sh"), "{err}");
}

#[test]
fn minilm_matches_python_tokenizers_and_onnxruntime() {
    let text =
        std::fs::read_to_string(fixtures().join("models/all-minilm-l6-v2.json")).expect("golden");
    let g: serde_json::Value = serde_json::from_str(&text).expect("json");
    let m = text::MiniLm::load(&ModelDir::from_env(), 1).unwrap_or_else(|e| panic!("{e}"));
    let rows = g["texts"].as_array().expect("texts");
    let texts: Vec<String> = rows
        .iter()
        .map(|r| r["text"].as_str().expect("text").to_owned())
        .collect();
    // Same word pieces as the Python tokenizers package on the same tokenizer.json.
    let (seq, ids, mask) = m.tokenize(&texts).expect("tokenize");
    for (i, r) in rows.iter().enumerate() {
        let want: Vec<i64> = r["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_i64().expect("id"))
            .collect();
        let n = mask[i * seq..][..seq].iter().filter(|v| **v == 1).count();
        assert_eq!(&ids[i * seq..][..n], &want[..], "{}", texts[i]);
    }
    // Embedded as one padded batch: the attention mask makes padding irrelevant.
    let embs = m.embed(&texts).expect("embed");
    for (e, r) in embs.iter().zip(rows) {
        let want = floats(&r["embedding"]);
        let diff = max_abs_diff(e, &want);
        assert!(diff < 1e-4, "max diff {diff}");
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn text_vectors_rank_a_matching_caption_first() {
    let m = text::MiniLm::load(&ModelDir::from_env(), 1).unwrap_or_else(|e| panic!("{e}"));
    let captions: Vec<String> = [
        "navy solid formal dress shirt, slim fit, formal classic",
        "red floral sundress, casual bohemian",
        "black leather boots, classic",
        "grey hoodie, relaxed fit, casual streetwear",
    ]
    .map(String::from)
    .to_vec();
    let c = m.embed(&captions).expect("embed");
    for (query, want) in [
        ("navy formal shirt", 0),
        ("summer dress with flowers", 1),
        ("boots", 2),
        ("comfy sweatshirt", 3),
    ] {
        let q = &m.embed(&[query.to_owned()]).expect("embed")[0];
        let best = (0..c.len())
            .max_by(|a, b| cosine(q, &c[*a]).total_cmp(&cosine(q, &c[*b])))
            .expect("best");
        assert_eq!(best, want, "{query}");
    }
}

#[test]
fn person_mask_matches_python_onnxruntime() {
    let text = std::fs::read_to_string(fixtures().join("models/selfie-segmentation.json"))
        .expect("golden");
    let g: serde_json::Value = serde_json::from_str(&text).expect("json");
    let m = mask::PersonMask::load(&ModelDir::from_env(), 1).unwrap_or_else(|e| panic!("{e}"));
    for (name, want) in g["images"].as_object().expect("images") {
        let img = image::open(fixtures().join("photos").join(name))
            .expect("photo")
            .to_rgb8();
        let grid = m.mask(&img).expect("mask");
        assert_eq!(grid.side, 256);
        let pooled: Vec<f32> = (0..256)
            .map(|b| {
                let (by, bx) = (b / 16, b % 16);
                let mut s = 0.0;
                for y in by * 16..by * 16 + 16 {
                    for x in bx * 16..bx * 16 + 16 {
                        s += grid.prob[y * 256 + x];
                    }
                }
                s / 256.0
            })
            .collect();
        let want = floats(&want["pooled16"]);
        let diff = max_abs_diff(&pooled, &want);
        // Inputs differ only by JPEG decoder and resize rounding.
        assert!(diff < 0.05, "{name}: max block difference {diff}");
    }
}

#[test]
fn par_map_keeps_order_and_uses_every_job() {
    let items: Vec<u64> = (0..50).collect();
    let threads = Mutex::new(std::collections::HashSet::new());
    let out = par_map(items, 3, |i| {
        threads
            .lock()
            .expect("lock")
            .insert(std::thread::current().id());
        // Uneven work: later items finish first.
        std::thread::sleep(std::time::Duration::from_millis(50 - i));
        i * 2
    });
    assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(threads.lock().expect("lock").len(), 3);
    assert_eq!(par_map(Vec::<u8>::new(), 4, |x| x), Vec::<u8>::new());
}

/// Two sessions split a batch between them: the same outputs as one session, within float
/// rounding, in the same order.
#[test]
fn two_sessions_give_one_sessions_answers() {
    let dir = ModelDir::from_env();
    let one = ImageNetModel::load(&dir, 1).unwrap_or_else(|e| panic!("{e}"));
    let two = ImageNetModel::load(
        &dir,
        Threads {
            intra: 1,
            jobs: 2,
            spinning: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let batch: Vec<Vec<f32>> = [
        "cat.jpg",
        "coffee.jpg",
        "rocket.jpg",
        "motorcycle.jpg",
        "cat_small.jpg",
    ]
    .iter()
    .map(|n| {
        let img = image::open(fixtures().join("photos").join(n))
            .expect("photo")
            .to_rgb8();
        one.preprocess(&img)
    })
    .collect();
    // Twice the photos: more than MAX_RUN_BATCH per session, so both split into several runs.
    let batch: Vec<Vec<f32>> = batch.iter().chain(&batch).cloned().collect();
    assert!(batch.len() > 2 * MAX_RUN_BATCH);
    let a = one.infer(&batch).expect("one");
    let b = two.infer(&batch).expect("two");
    // Each photo alone: outputs come back in input order whatever the split.
    let c: Vec<ImageNetOutput> = batch
        .iter()
        .flat_map(|x| one.infer(std::slice::from_ref(x)).expect("alone"))
        .collect();
    assert_eq!((a.len(), b.len(), c.len()), (10, 10, 10));
    for (x, y) in a.iter().zip(&b).chain(a.iter().zip(&c)) {
        let d = x
            .embedding
            .iter()
            .zip(&y.embedding)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-3, "max embedding difference {d}");
        assert_eq!(x.top_k(1)[0].0, y.top_k(1)[0].0);
    }
}

/// A region resized in place gives the pixels of the region copied out and then resized, for
/// centre-cropped and stretched inputs, at odd offsets and sizes.
#[test]
fn a_region_is_resized_as_its_copy_would_be() {
    let img = image::open(fixtures().join("photos/motorcycle.jpg"))
        .expect("photo")
        .to_rgb8();
    for region in [
        (0, 0, 741, 500),
        (37, 11, 300, 451),
        (500, 200, 241, 95),
        (3, 5, 2, 2),
    ] {
        let copy =
            image::imageops::crop_imm(&img, region.0, region.1, region.2, region.3).to_image();
        for (short, side) in [(Some(256), 224), (None, 224), (Some(40), 17)] {
            assert_eq!(
                fit_square_region(&img, region, short, side),
                fit_square(&copy, short, side),
                "{region:?} {short:?} {side}"
            );
        }
    }
}

/// The resize as first written (a `round` call per channel value, pixels pushed one by one):
/// the faster loop must give exactly its pixels.
fn resize_window_reference(
    img: &RgbImage,
    region: Region,
    nw: u32,
    nh: u32,
    window: Region,
) -> RgbImage {
    let (rx, ry, w, h) = region;
    let (w, h) = (w.max(1), h.max(1));
    let (ox, oy, ow, oh) = window;
    let src = img.as_raw();
    let axis = |from: u32, count: u32, out: u32, inp: u32, offset: u32| {
        let scale = f64::from(inp) / f64::from(out.max(1));
        (from..from + count)
            .map(|o| {
                let f = ((f64::from(o) + 0.5) * scale - 0.5).max(0.0);
                let i0 = (f.floor() as u32).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                let w = (f - f64::from(i0)).clamp(0.0, 1.0) as f32;
                ((offset + i0) as usize, (offset + i1) as usize, w)
            })
            .collect::<Vec<_>>()
    };
    let (xs, ys) = (axis(ox, ow, nw, w, rx), axis(oy, oh, nh, h, ry));
    let stride = img.width() as usize * 3;
    let mut out = Vec::new();
    for &(y0, y1, fy) in &ys {
        let (r0, r1) = (&src[y0 * stride..][..stride], &src[y1 * stride..][..stride]);
        for &(x0, x1, fx) in &xs {
            for c in 0..3 {
                let p = |r: &[u8], x: usize| f32::from(r[x * 3 + c]);
                let top = p(r0, x0) + (p(r0, x1) - p(r0, x0)) * fx;
                let bottom = p(r1, x0) + (p(r1, x1) - p(r1, x0)) * fx;
                out.push((top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    RgbImage::from_raw(ow, oh, out).expect("size")
}

/// The resize loop is pixel-identical to the reference on a photo and on noise (every
/// rounding case), up- and downscaling, regions and windows at odd offsets, empty windows.
#[test]
fn the_resize_loop_gives_exactly_the_reference_pixels() {
    let photo = image::open(fixtures().join("photos/motorcycle.jpg"))
        .expect("photo")
        .to_rgb8();
    let mut seed = 0x2545_f491_u32;
    let noise = RgbImage::from_fn(97, 61, |_, _| {
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        };
        image::Rgb([next(), next(), next()])
    });
    for img in [&photo, &noise] {
        let all = whole(img);
        let (w, h) = img.dimensions();
        for (region, nw, nh, window) in [
            (all, 512, 512, (0, 0, 512, 512)),
            (all, 300, 300, (0, 0, 300, 300)),
            (all, w * 3, h * 2, (5, 7, 40, 33)),
            ((3, 2, w / 2, h / 3), 131, 77, (0, 0, 131, 77)),
            ((1, 1, 7, 5), 224, 224, (16, 16, 192, 192)),
            (all, 64, 64, (0, 0, 0, 64)),
        ] {
            assert_eq!(
                resize_window(img, region, nw, nh, window),
                resize_window_reference(img, region, nw, nh, window),
                "{region:?} -> {nw}x{nh}, window {window:?}"
            );
        }
    }
}
