#!/usr/bin/env python3
"""A checksum of what a model computes, for conversions whose bytes are not reproducible
(tf2onnx orders some nodes by object identity): runs the ONNX file on a fixed input (a
deterministic RGB gradient with a red block, NHWC at the input's fixed size or 240x320, uint8 or
float 0..255 as the input wants) and prints the sha256 of its outputs rounded to 3 decimals.

Usage: output_digest.py <model.onnx>
"""
import hashlib
import sys

import numpy as np
import onnxruntime as ort

sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
dims = [d if isinstance(d, int) else None for d in inp.shape]
hh, ww = dims[1] or 240, dims[2] or 320
y, x = np.mgrid[0:hh, 0:ww]
img = np.stack([x * 255 // (ww - 1), y * 255 // (hh - 1), (x + y) * 255 // (hh + ww - 2)], -1)[None]
img[:, hh // 4:hh * 3 // 4, ww // 3:ww * 2 // 3] = [200, 30, 30]
img = img.astype(np.uint8 if inp.type == "tensor(uint8)" else np.float32)
h = hashlib.sha256()
for out in sess.run(None, {inp.name: img}):
    h.update(np.round(out.astype(np.float64), 3).tobytes())
print(h.hexdigest())
