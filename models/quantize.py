#!/usr/bin/env python3
"""Int8 quantisation, measured against the accuracy floors before anything ships.

For each image model FlashFit runs, builds a static int8 copy with ONNX Runtime's quantiser
(QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on the fixture photos
preprocessed as the stages do), then checks it against the fp32 model on every fixture photo:

- efficientnet-lite0 (classify + image vectors): embedding cosine >= 0.99 and the same top-1
  ImageNet class on every photo;
- detectors: every fp32 detection (confidence >= 0.5) found again with the same class and box
  IoU >= 0.9, and no new class;
- selfie-segmentation (person mask): mask IoU (p >= 0.5) >= 0.95.

Prints CPU milliseconds per inference (one intra-op thread) for both and the verdict. A model
ships an int8 variant only when every check holds (none did on 2026-12-04: README, Models).
Usage: quantize.py <models_dir> <fixtures_dir> [--keep DIR]
"""
import glob
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden_detectors as golden  # noqa: E402  (the independent numpy decoders)


def photos(fixtures):
    paths = sorted(glob.glob(os.path.join(fixtures, "photos", "*.jpg")) + glob.glob(os.path.join(fixtures, "photos", "*.png")))
    return [(os.path.basename(p), np.ascontiguousarray(cv2.imread(p)[:, :, ::-1])) for p in paths]


def lite0_input(img):
    h, w = img.shape[:2]
    s = 256 / min(h, w)
    r = cv2.resize(img, (max(224, round(w * s)), max(224, round(h * s))), interpolation=cv2.INTER_LINEAR)
    y, x = (r.shape[0] - 224) // 2, (r.shape[1] - 224) // 2
    c = r[y:y + 224, x:x + 224].astype(np.float32)
    return {"input": ((c - 127) / 128).transpose(2, 0, 1)[None]}


def stretch(name, side, scale, offset):
    return lambda img: {name: (cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32) * scale + offset)[None]}


MODELS = {
    "efficientnet-lite0": lite0_input,
    "ssd-mobilenetv2-oidv4": stretch("normalized_input_image_tensor", 300, 1 / 127.5, -1.0),
    "centernet-coco": stretch("tower_0/images:0", 512, 1.0, 0.0),
    "selfie-segmentation": stretch("input_1:0", 256, 1 / 255, 0.0),
}


class Calibration(CalibrationDataReader):
    def __init__(self, feeds):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def cpu_ms(path, feed, n=20):
    s = session(path)
    s.run(None, feed)
    t = time.process_time()
    for _ in range(n):
        s.run(None, feed)
    return (time.process_time() - t) / n * 1000


def check(name, fp32, int8, imgs):
    """(passed, worst figure, note)"""
    if name == "efficientnet-lite0":
        a, b = session(fp32), session(int8)
        worst, same = 1.0, True
        for _, img in imgs:
            (l1, e1), (l2, e2) = a.run(None, lite0_input(img)), b.run(None, lite0_input(img))
            e1, e2 = e1[0], e2[0]
            worst = min(worst, float(e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2)))
            same &= int(l1.argmax()) == int(l2.argmax())
        return worst >= 0.99 and same, f"min embedding cosine {worst:.4f}, top-1 {'same' if same else 'differs'}"
    if name == "selfie-segmentation":
        a, b = session(fp32), session(int8)
        worst = 1.0
        for _, img in imgs:
            feed = MODELS[name](img)
            m1, m2 = a.run(None, feed)[0] >= 0.5, b.run(None, feed)[0] >= 0.5
            union = (m1 | m2).sum()
            worst = min(worst, float((m1 & m2).sum() / union) if union else 1.0)
        return worst >= 0.95, f"min mask IoU {worst:.3f}"
    decode = golden.oid if name == "ssd-mobilenetv2-oidv4" else golden.centernet
    worst, missing, extra = 1.0, [], []
    for photo, img in imgs:
        d1 = [d for d in decode(img, fp32) if d["confidence"] >= 0.5]
        d2 = decode(img, int8)
        for d in d1:
            m = max([golden.iou(d["bbox"], e["bbox"]) for e in d2 if e["class"] == d["class"]] + [0.0])
            worst = min(worst, m)
            if m < 0.9:
                missing.append(f"{photo}:{d['class']}")
        extra += [f"{photo}:{e['class']}" for e in d2 if e["confidence"] >= 0.5 and all(e["class"] != d["class"] for d in d1)]
    note = f"min IoU {worst:.3f}" + (f", lost {missing}" if missing else "") + (f", new {extra}" if extra else "")
    return not missing and not extra, note


def main():
    models, fixtures = sys.argv[1], sys.argv[2]
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    golden.models = models
    golden.CONF = 0.3
    imgs = photos(fixtures)
    out = keep or tempfile.mkdtemp()
    print(f"{'model':<24} {'fp32 ms':>8} {'int8 ms':>8}  verdict")
    for name, prep in MODELS.items():
        fp32 = os.path.join(models, name, "1", "model.onnx")
        int8 = os.path.join(out, f"{name}-int8.onnx")
        quantize_static(fp32, int8, Calibration([prep(img) for _, img in imgs]), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        feed = prep(imgs[0][1])
        ok, note = check(name, fp32, int8, imgs)
        print(f"{name:<24} {cpu_ms(fp32, feed):>8.1f} {cpu_ms(int8, feed):>8.1f}  {'PASS' if ok else 'FAIL'}: {note}", flush=True)


if __name__ == "__main__":
    main()
