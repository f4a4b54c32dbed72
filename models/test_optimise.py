#!/usr/bin/env python3
"""Tests for optimise_onnx.py on a small graph built the way tf2onnx writes MobileNetV3
(a hard-swish after a convolution, a squeeze-excite gate between two no-op Reshapes), run with
onnxruntime before and after: same outputs (within the fp16 1/6 difference the docstring
explains), the patterns gone, and a second pass finds nothing. Also checks that a Reshape
that does change the shape and a Clip that is not an activation are left alone.

With the models cached (argument: the models directory), also derives CenterNet's serving
graph (--centernet-heads): its heads, decoded, give model.onnx's detection rows on the
reference images, the graph has no max-pool or top-k left and takes channels-first input; and a
derived graph whose box distances are 5% off is caught by that check.

Usage: test_optimise.py [MODELS_DIR]   (exit 0 when every check passes; infra/test.sh runs it)
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import optimise_onnx  # noqa: E402

C = np.float32(0.1666259765625)  # 1/6 as TF.js stores it (fp16)


def const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def graph():
    rng = np.random.default_rng(7)
    inits = [
        const("w1", rng.normal(0, 0.5, (8, 3, 3, 3))), const("b1", rng.normal(0, 0.5, 8)),
        const("three", [[[[3.0]]]]), const("c", C), const("zero", 0.0), const("six", 6.0),
        const("w2", rng.normal(0, 0.5, (8, 8, 1, 1))), const("b2", rng.normal(0, 0.5, 8)),
        numpy_helper.from_array(np.array([1, 8, 1, 1], np.int64), "se_shape"),
        numpy_helper.from_array(np.array([1, 8, 64], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["y"], pads=[1, 1, 1, 1]),
        # hard-swish: Mul(Mul(c, y), Clip(Add(y, 3), 0, 6))
        helper.make_node("Add", ["y", "three"], ["y3"]),
        helper.make_node("Mul", ["c", "y"], ["yc"]),
        helper.make_node("Clip", ["y3", "zero", "six"], ["yclip"]),
        helper.make_node("Mul", ["yc", "yclip"], ["h"]),
        # squeeze-excite: GAP -> Reshape (no-op) -> Conv -> gate -> Mul
        helper.make_node("GlobalAveragePool", ["h"], ["g"]),
        helper.make_node("Reshape", ["g", "se_shape"], ["g2"]),
        helper.make_node("Conv", ["g2", "w2", "b2"], ["s"]),
        helper.make_node("Add", ["s", "three"], ["s3"]),
        helper.make_node("Clip", ["s3", "zero", "six"], ["sclip"]),
        helper.make_node("Mul", ["c", "sclip"], ["gate"]),
        helper.make_node("Mul", ["gate", "h"], ["z"]),
        # a Clip that is not an activation (no Add of 3) and a Reshape that does reshape
        helper.make_node("Clip", ["z", "zero", "six"], ["zc"]),
        helper.make_node("Reshape", ["zc", "flat"], ["out"]),
    ]
    g = helper.make_graph(
        nodes, "mbv3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 64])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def ops(model):
    return [n.op_type for n in model.graph.node]


def centernet_heads_checks(models_dir, failures):
    path = os.path.join(models_dir, "centernet-coco", "1", "model.onnx")
    if not os.path.exists(path):
        print(f"test_optimise.py: {path} not cached, CenterNet heads not checked")
        return 0
    original = onnx.load(path)
    heads = onnx.load(path)
    optimise_onnx.centernet_heads(heads)
    onnx.checker.check_model(heads)
    left = {"MaxPool", "TopK", "Equal"} & set(ops(heads))
    if left:
        failures.append(f"the heads graph still decodes: {sorted(left)}")
    dims = [d.dim_value for d in heads.graph.input[0].type.tensor_type.shape.dim]
    if dims != [1, 3, 512, 512]:
        failures.append(f"the heads graph's input is {dims}, not [1, 3, 512, 512]")
    compared = optimise_onnx.check_heads(original, heads)
    # A fault the check must catch: box distances scaled by 1.05.
    for n in heads.graph.node:
        n.output[:] = ["wh_raw" if o == "wh" else o for o in n.output]
    heads.graph.initializer.append(const("five_percent", 1.05))
    heads.graph.node.append(helper.make_node("Mul", ["wh_raw", "five_percent"], ["wh"]))
    try:
        optimise_onnx.check_heads(original, heads)
        failures.append("box distances 5% off passed the heads check")
    except ValueError:
        pass
    return compared


def main():
    original = graph()
    optimised = graph()
    fused, dropped = optimise_onnx.optimise(optimised)
    onnx.checker.check_model(optimised)
    failures = []
    if (fused, dropped) != (2, 1):
        failures.append(f"expected 2 activations fused and 1 reshape dropped, got {fused}, {dropped}")
    got = ops(optimised)
    if got.count("HardSigmoid") != 2 or got.count("Clip") != 1 or got.count("Add") != 0 or got.count("Reshape") != 1:
        failures.append(f"unexpected graph after optimising: {got}")
    x = np.random.default_rng(3).normal(0, 3, (1, 3, 8, 8)).astype(np.float32)
    a, b = run(original, x), run(optimised, x)
    # Exact below x = 3; above, 1 instead of 6c = 0.99976: relative 2.4e-4 per activation.
    # Measured as verify.py does: |diff| against the output's RMS plus the value itself.
    err = float(np.max(np.abs(a - b) / (np.sqrt(np.mean(a * a)) + np.abs(a))))
    if err > 2e-3:
        failures.append(f"outputs differ by up to {err:.2e} of RMS + |value|")
    if any(optimise_onnx.optimise(optimised)):
        failures.append("a second pass found something to do (not idempotent)")
    compared = centernet_heads_checks(sys.argv[1] if len(sys.argv) > 1 else "/var/lib/flashfit/models", failures)
    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print(f"test_optimise.py: OK (2 activations fused, 1 no-op reshape dropped, outputs within {err:.1e}; "
          f"CenterNet heads: {compared} detection rows as model.onnx's)")


if __name__ == "__main__":
    main()
