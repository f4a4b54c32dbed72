#!/usr/bin/env python3
"""Graph rewrites that make TF.js / tf2onnx exports of MobileNetV3 cheaper to run, without
changing what they compute beyond float rounding. (1) The hard-swish and hard-sigmoid
activations the converter spells out element by element become ONNX Runtime's HardSigmoid
(one pass over the tensor instead of three or four):

  hard-swish  Mul(Mul(c, x), Clip(Add(x, 3), 0, 6))  ->  Mul(x, HardSigmoid(x; alpha=c, beta=3c))
  gate        Mul(c, Clip(Add(x, 3), 0, 6))          ->  HardSigmoid(x; alpha=c, beta=3c)

c is the model's own constant (TF.js stores 1/6 as fp16: 0.1666259765625), so both are exact
for x <= 3; above, HardSigmoid saturates at 1 where the original stops at 6c = 0.99976 (a
relative difference of 2.4e-4, well inside verify.py's same-model tolerance of 2e-3, and the
converted file is verified against its reference outputs after this step). (2) Reshapes to
the shape their input already has are dropped (exact). CenterNet's CPU time per inference
drops by about a fifth (README, Models). Idempotent: an optimised graph has nothing left to do.

(3) `--centernet-heads` derives CenterNet's serving graph (heads.onnx, what the detect stage
runs) from the verified model.onnx: the image input channels-first (the graph's first node was
a transpose to that), and the two raw heads as its outputs, `heatmap` [1,80,128,128] (class
scores after the sigmoid) and `wh` [1,4,128,128] (distances to the box sides in input px). The
graph's own decoding after them (a max-pool, an equality, a product and a top-k over all 1.3 M
scores, and a transpose of the heat map) is done by the detect stage on the few scores above
its threshold (flashfit-vision `centernet_peaks`; `centernet_rows` below is the same in numpy).
About 15% less CPU per inference. Before writing, the derived graph is run against the
original on the reference images: the same detection rows or the script fails.

Usage: optimise_onnx.py <in.onnx> <out.onnx>   (prints how many activations it fused)
       optimise_onnx.py --check <model.onnx>      exit 0 if something is left to do, else 1
       optimise_onnx.py --centernet-heads <model.onnx> <heads.onnx>
"""
import sys

import onnx
from onnx import helper, numpy_helper


def scalar(inits, name):
    """The value of a one-element initialiser, or None."""
    a = inits.get(name)
    return float(a.reshape(-1)[0]) if a is not None and a.size == 1 else None


def fuse(model):
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def only_use(value):
        return value not in outputs and len(consumers.get(value, [])) == 1

    replace, drop = {}, set()
    for clip in g.node:
        if clip.op_type != "Clip" or len(clip.input) != 3:
            continue
        if (scalar(inits, clip.input[1]), scalar(inits, clip.input[2])) != (0.0, 6.0):
            continue
        add = producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or scalar(inits, add.input[1]) != 3.0:
            continue
        if not (only_use(add.output[0]) and only_use(clip.output[0])):
            continue
        x = add.input[0]
        (after,) = consumers[clip.output[0]]
        if after.op_type != "Mul":
            continue
        other = next(i for i in after.input if i != clip.output[0])
        scale = producer.get(other)
        c = None
        if scale is not None and scale.op_type == "Mul" and only_use(scale.output[0]):
            c_name = next((i for i in scale.input if i in inits), None)
            rest = [i for i in scale.input if i != c_name]
            if c_name is not None and rest == [x]:
                c = scalar(inits, c_name)
        if c is not None:  # hard-swish on x
            hs = after.output[0] + "/hard_sigmoid"
            replace[id(after)] = [
                helper.make_node("HardSigmoid", [x], [hs], alpha=c, beta=3 * c, name=after.name + "/hard_sigmoid"),
                helper.make_node("Mul", [x, hs], [after.output[0]], name=after.name),
            ]
            drop |= {id(add), id(clip), id(scale)}
            continue
        c = scalar(inits, other)
        if c is not None:  # gate: c * clip(x + 3, 0, 6)
            replace[id(after)] = [
                helper.make_node("HardSigmoid", [x], [after.output[0]], alpha=c, beta=3 * c, name=after.name)
            ]
            drop |= {id(add), id(clip)}
    nodes = []
    for n in g.node:
        if id(n) in replace:
            nodes += replace[id(n)]
        elif id(n) not in drop:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return len(replace)


def drop_noop_reshapes(model):
    """Removes Reshapes to the shape their input already has (tf2onnx writes one before and
    after every squeeze-excite 1x1 convolution): exact, and they cut ONNX Runtime's NCHWc
    layout into pieces with a reorder on each side."""
    g = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    outputs = {o.name for o in g.output}
    renamed, nodes = {}, []
    for n in g.node:
        n.input[:] = [renamed.get(i, i) for i in n.input]
        if (n.op_type == "Reshape" and n.output[0] not in outputs and n.input[1] in inits
                and shapes.get(n.input[0]) == inits[n.input[1]].tolist()):
            renamed[n.output[0]] = n.input[0]
            continue
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return len(renamed)


def optimise(model):
    """(activations fused, reshapes dropped); unused initialisers removed."""
    done = fuse(model), drop_noop_reshapes(model)
    g = model.graph
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return done


def centernet_heads(model):
    """Rewrites a CenterNet export (tf2onnx of the TF.js model) in place: NCHW input, outputs
    `heatmap` and `wh` (the inputs of the transposes that made `tower_0/keypoints` and
    `tower_0/wh`), everything after them removed."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def perm(n):
        return next((list(a.ints) for a in n.attribute if a.name == "perm"), None)

    def head(output):
        t = producer.get(output)
        if t is None or t.op_type != "Transpose" or perm(t) != [0, 2, 3, 1]:
            raise ValueError(f"{output} is not a channels-last transpose of a head: not a CenterNet export")
        return t.input[0]

    names = {head("tower_0/keypoints"): "heatmap", head("tower_0/wh"): "wh"}
    (inp,) = g.input
    first = consumers.get(inp.name, [])
    if len(first) != 1 or first[0].op_type != "Transpose" or perm(first[0]) != [0, 3, 1, 2]:
        raise ValueError("the image input does not go through one NHWC -> NCHW transpose")
    to_nchw = first[0].output[0]
    for n in g.node:
        n.input[:] = [inp.name if i == to_nchw else names.get(i, i) for i in n.input]
        n.output[:] = [names.get(o, o) for o in n.output]
    dims = inp.type.tensor_type.shape.dim
    n_, h, w, c = [d.dim_value for d in dims]
    for d, v in zip(dims, [n_, c, h, w]):
        d.dim_value = v
    shapes = {}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    for v in inferred.value_info:
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    del g.output[:]
    for name in ["heatmap", "wh"]:
        g.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shapes.get(name)))
    needed, kept = {"heatmap", "wh"}, []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed |= set(n.input)
    del g.node[:]
    g.node.extend(reversed(kept))
    used = {i for n in g.node for i in n.input}
    kept_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    del g.value_info[:]


def centernet_rows(heat, wh, k=100, stride=4.0):
    """The export's own decoding of its heads ([classes,h,w], [4,h,w]): peaks (equal to their
    3x3 max-pool), the k highest in channels-last order, as rows x1, y1, x2, y2, score, class."""
    import numpy as np
    c, h, w = heat.shape
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    scores = np.where(heat == pooled, heat, 0).transpose(1, 2, 0).reshape(-1)
    order = np.lexsort((np.arange(scores.size), -scores))[:k]
    rows = []
    for i in order:
        cell, cls = divmod(int(i), c)
        y, x = divmod(cell, w)
        cx, cy = np.float32(x * stride), np.float32(y * stride)
        rows.append([cx - wh[0, y, x], cy - wh[1, y, x], cx + wh[2, y, x], cy + wh[3, y, x], scores[i], cls])
    return np.array(rows, np.float32).reshape(-1, 6)


def check_heads(original, derived, min_score=0.05):
    """Runs both graphs on the reference images (verify.py's): the derived graph's heads,
    decoded, give the original's detection rows (score >= min_score) or ValueError."""
    import numpy as np
    import onnxruntime as ort
    import verify
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    a = ort.InferenceSession(original.SerializeToString(), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(derived.SerializeToString(), so, providers=["CPUExecutionProvider"])
    compared = 0
    for case in ["person", "cat", "motorcycle", "gradient"]:
        x = verify.nhwc(verify.IMAGES[case](), 512)
        want = a.run(["tower_0/detections"], {"tower_0/images:0": x})[0][0]
        heat, wh = b.run(["heatmap", "wh"], {"tower_0/images:0": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        got = centernet_rows(heat[0], wh[0])
        for rows, other, what in [(want, got, "missing from"), (got, want, "extra in")]:
            for r in rows[rows[:, 4] >= min_score]:
                same = other[(other[:, 5] == r[5]) & (np.abs(other[:, 4] - r[4]) <= 1e-4)]
                if not (np.abs(same[:, :4] - r[:4]) <= 1e-2).all(axis=1).any():
                    raise ValueError(f"{case}: detection {r.tolist()} {what} the derived graph's heads")
                compared += 1
    return compared


def main():
    if sys.argv[1] == "--centernet-heads":
        original = onnx.load(sys.argv[2])
        model = onnx.load(sys.argv[2])
        centernet_heads(model)
        onnx.checker.check_model(model)
        compared = check_heads(original, model)
        onnx.save(model, sys.argv[3])
        print(f"optimise_onnx.py: CenterNet heads graph written; {compared} detection rows the same as the original's")
        return
    if sys.argv[1] == "--check":
        sys.exit(0 if any(optimise(onnx.load(sys.argv[2]))) else 1)
    model = onnx.load(sys.argv[1])
    fused, dropped = optimise(model)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])
    print(f"optimise_onnx.py: {fused} hard-swish / hard-sigmoid activations fused, {dropped} no-op reshapes dropped")


if __name__ == "__main__":
    main()
