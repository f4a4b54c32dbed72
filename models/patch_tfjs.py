#!/usr/bin/env python3
"""Adds the node attributes TensorFlow >= 2.16 requires and older TFJS graph models omit, so
tf2onnx can import them: `TArgs` on fused conv / depthwise / matmul nodes (one DT_FLOAT per
extra argument) and `index_type` on TopKV2. Writes the patched model.json next to the weights.

Usage: patch_tfjs.py <model.json> <out.json>
"""
import json
import sys

FUSED = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"}


def main():
    model = json.load(open(sys.argv[1]))
    for node in model["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] in FUSED and "TArgs" not in attr:
            n = int(attr.get("num_args", {}).get("i", "0"))
            attr["TArgs"] = {"list": {"type": ["DT_FLOAT"] * n}}
        if node["op"] == "TopKV2" and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
    json.dump(model, open(sys.argv[2], "w"), sort_keys=True)


if __name__ == "__main__":
    main()
