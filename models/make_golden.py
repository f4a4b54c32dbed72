#!/usr/bin/env python3
"""Golden outputs of Python onnxruntime on the same ONNX files the Rust crate loads.

For a few fixture photos: the centre-cropped 224x224 input is written as PNG (so Rust feeds the
exact same pixels), with onnxruntime's logits and embedding for it, and the top-1 class of the
full cv2 pipeline (resize short side 256, centre crop) for the preprocessing test.
Usage: make_golden.py <models_dir> <fixtures_dir>
"""
import json, os, sys
import cv2
import numpy as np
import onnxruntime as ort

models, fixtures = sys.argv[1], sys.argv[2]
out_dir = os.path.join(fixtures, "models")
os.makedirs(out_dir, exist_ok=True)
sess = ort.InferenceSession(os.path.join(models, "efficientnet-lite0/1/model.onnx"),
                            providers=["CPUExecutionProvider"])


def crop224(path):
    img = cv2.imread(path)[:, :, ::-1]
    h, w = img.shape[:2]
    s = 256 / min(h, w)
    img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    y, x = (h - 224) // 2, (w - 224) // 2
    return np.ascontiguousarray(img[y:y + 224, x:x + 224])


golden = {"_generator": f"onnxruntime {ort.__version__}, opencv {cv2.__version__}", "images": {}}
for name in ["cat.jpg", "coffee.jpg", "motorcycle.jpg"]:
    rgb = crop224(os.path.join(fixtures, "photos", name))
    png = name.replace(".jpg", "_224.png")
    cv2.imwrite(os.path.join(out_dir, png), rgb[:, :, ::-1])
    x = ((rgb.astype(np.float32) - 127) / 128).transpose(2, 0, 1)[None]
    logits, emb = sess.run(["logits", "embedding"], {"input": x})
    golden["images"][name] = {
        "input_png": png,
        "top5": [int(i) for i in np.argsort(-logits[0])[:5]],
        "logits": [round(float(v), 5) for v in logits[0]],
        "embedding": [round(float(v), 5) for v in emb[0]],
    }
json.dump(golden, open(os.path.join(out_dir, "efficientnet-lite0.json"), "w"))
print({k: v["top5"][:3] for k, v in golden["images"].items()})
