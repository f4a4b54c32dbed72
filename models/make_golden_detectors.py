#!/usr/bin/env python3
"""Golden detections from Python onnxruntime on the ONNX detectors, decoded here independently
of the Rust code (anchors, box coder, sigmoid, NMS written again in numpy), for the Rust
detector test. Images are resized with cv2 INTER_LINEAR, as the Rust preprocessing does.
Usage: make_golden_detectors.py <models_dir> <fixtures_dir>
"""
import json, os, sys
import cv2
import numpy as np
import onnxruntime as ort

# Set by main(); models/quantize.py imports the decoders and sets `models` itself.
models, fixtures = "", ""
PHOTOS = ["person_suit.jpg", "fmnist_ankle_boot.png", "coffee.jpg", "retina.jpg", "cat.jpg"]
CONF, IOU = 0.3, 0.45


def labels(name):
    return open(os.path.join(models, "labels", name + ".txt")).read().split("\n")


def iou(a, b):
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0])); ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0


def nms(dets):
    dets = sorted(dets, key=lambda d: -d["confidence"]); kept = []
    for d in dets:
        if all(k["class"] != d["class"] or iou(k["bbox"], d["bbox"]) <= IOU for k in kept):
            kept.append(d)
    return kept


def anchors():
    sizes, n = [19, 10, 5, 3, 2, 1], 6
    scales = [0.2 + 0.75 * i / 5 for i in range(n)] + [1.0]
    out = []
    for i, s in enumerate(sizes):
        if i == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[i], r) for r in (1.0, 2.0, 0.5, 3.0, 1 / 3)] + [(np.sqrt(scales[i] * scales[i + 1]), 1.0)]
        for y in range(s):
            for x in range(s):
                for sc, r in specs:
                    out.append(((y + 0.5) / s, (x + 0.5) / s, sc / np.sqrt(r), sc * np.sqrt(r)))
    return np.array(out)


def oid(img, path=None):
    sess = ort.InferenceSession(path or os.path.join(models, "ssd-mobilenetv2-oidv4/1/model.onnx"))
    lab = labels("oidv4-24"); h, w = img.shape[:2]
    x = (cv2.resize(img, (300, 300), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 127.5 - 1)[None]
    enc, logits = sess.run(None, {"normalized_input_image_tensor": x})
    a = anchors(); assert len(a) == 1917
    dets = []
    for i in range(1917):
        c = 1 + int(np.argmax(logits[0, i, 1:])); p = 1 / (1 + np.exp(-logits[0, i, c]))
        if p < CONF:
            continue
        ty, tx, th, tw = enc[0, i]; ya, xa, ha, wa = a[i]
        yc, xc = ty / 10 * ha + ya, tx / 10 * wa + xa; bh, bw = np.exp(th / 5) * ha, np.exp(tw / 5) * wa
        box = [float(np.clip(v, 0, m)) for v, m in [((xc - bw / 2) * w, w), ((yc - bh / 2) * h, h), ((xc + bw / 2) * w, w), ((yc + bh / 2) * h, h)]]
        dets.append({"class": lab[c], "confidence": float(p), "bbox": box})
    return nms(dets)


def centernet(img, path=None):
    sess = ort.InferenceSession(path or os.path.join(models, "centernet-coco/1/model.onnx"))
    lab = labels("coco80"); h, w = img.shape[:2]
    x = cv2.resize(img, (512, 512), interpolation=cv2.INTER_LINEAR).astype(np.float32)[None]
    rows = sess.run(["tower_0/detections"], {"tower_0/images:0": x})[0][0]
    dets = [{"class": lab[int(r[5])], "confidence": float(r[4]),
             "bbox": [float(np.clip(r[0] * w / 512, 0, w)), float(np.clip(r[1] * h / 512, 0, h)),
                      float(np.clip(r[2] * w / 512, 0, w)), float(np.clip(r[3] * h / 512, 0, h))]}
            for r in rows if r[4] >= CONF]
    return nms(dets)


def pedestrian(img):
    sess = ort.InferenceSession(os.path.join(models, "ssdlite-pedestrian/1/model.onnx"))
    lab = labels("coco80"); h, w = img.shape[:2]
    b, s, c, n = sess.run(["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"],
                          {"image_tensor:0": img[None]})
    return [{"class": lab[int(c[0, i]) - 1], "confidence": float(s[0, i]),
             "bbox": [float(b[0, i, 1] * w), float(b[0, i, 0] * h), float(b[0, i, 3] * w), float(b[0, i, 2] * h)]}
            for i in range(int(n[0])) if s[0, i] >= CONF]


def main():
    global models, fixtures
    models, fixtures = sys.argv[1], sys.argv[2]
    golden = {"_generator": f"onnxruntime {ort.__version__}, opencv {cv2.__version__}", "confidence": CONF,
              "iou": IOU, "detectors": {}}
    for name, fn in [("ssd-mobilenetv2-oidv4", oid), ("centernet-coco", centernet), ("ssdlite-pedestrian", pedestrian)]:
        golden["detectors"][name] = {}
        for photo in PHOTOS:
            img = np.ascontiguousarray(cv2.imread(os.path.join(fixtures, "photos", photo))[:, :, ::-1])
            golden["detectors"][name][photo] = fn(img)
    json.dump(golden, open(os.path.join(fixtures, "models", "detectors.json"), "w"), indent=1)
    for k, v in golden["detectors"].items():
        print(k, {p: [(d["class"], round(d["confidence"], 2)) for d in ds] for p, ds in v.items()})


if __name__ == "__main__":
    main()
