#!/usr/bin/env python3
"""Golden sentence embeddings from Python onnxruntime on the converted all-MiniLM-L6-v2, with
token ids from the Python `tokenizers` package on the model's own tokenizer.json.
Usage: make_golden_text.py <models_dir> <fixtures_dir>
"""
import json, os, sys
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

models, fixtures = sys.argv[1], sys.argv[2]
d = os.path.join(models, "all-minilm-l6-v2/1")
tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
sess = ort.InferenceSession(os.path.join(d, "model.onnx"), providers=["CPUExecutionProvider"])
texts = ["navy formal shirt", "a red floral summer dress", "black leather boots, slim fit, classic"]
out = {"_generator": f"onnxruntime {ort.__version__}", "texts": []}
for t in texts:
    e = tok.encode(t)
    n = sum(e.attention_mask)
    ids = np.array([e.ids[:n]], np.int64)
    emb = sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
    out["texts"].append({"text": t, "ids": e.ids[:n], "embedding": [round(float(v), 6) for v in emb]})
json.dump(out, open(os.path.join(fixtures, "models", "all-minilm-l6-v2.json"), "w"))
print([x["ids"] for x in out["texts"]])
