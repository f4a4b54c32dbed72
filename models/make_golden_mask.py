#!/usr/bin/env python3
"""Golden person masks from Python onnxruntime on the converted selfie model: the 256x256
probability map (cv2 INTER_LINEAR resize, RGB / 255) pooled to 16x16 blocks.
Usage: make_golden_mask.py <models_dir> <fixtures_dir>
"""
import json, os, sys
import cv2
import numpy as np
import onnxruntime as ort

models, fixtures = sys.argv[1], sys.argv[2]
sess = ort.InferenceSession(os.path.join(models, "selfie-segmentation/1/model.onnx"),
                            providers=["CPUExecutionProvider"])
out = {"_generator": f"onnxruntime {ort.__version__}, opencv {cv2.__version__}", "images": {}}
for name in ["person_suit.jpg", "coffee.jpg"]:
    img = np.ascontiguousarray(cv2.imread(os.path.join(fixtures, "photos", name))[:, :, ::-1])
    x = (cv2.resize(img, (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255)[None]
    m = sess.run(None, {"input_1:0": x})[0][0, :, :, 0]
    pooled = m.reshape(16, 16, 16, 16).mean(axis=(1, 3))
    out["images"][name] = {"mean": float(m.mean()), "pooled16": [round(float(v), 4) for v in pooled.ravel()]}
json.dump(out, open(os.path.join(fixtures, "models", "selfie-segmentation.json"), "w"))
print({k: round(v["mean"], 3) for k, v in out["images"].items()})
