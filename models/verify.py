#!/usr/bin/env python3
"""Verifies a converted model by what it computes, portably (issue 11).

Runs the ONNX file with onnxruntime (CPUExecutionProvider) on fixed inputs and compares its
outputs with reference outputs kept in git, models/reference/<name>.npz, within tolerances.
A converted file's bytes are not a usable pin (tf2onnx output varies from run to run) and
neither is a hash of its outputs: floating-point kernels differ in the last bits between CPUs
(MLAS picks AVX2, AVX-512 or NEON kernels, block sizes and summation orders at run time), so a
hash of rounded outputs flips whenever a value sits near a rounding boundary.

Usage:
  verify.py NAME MODEL.onnx [--dest FINAL_PATH]  exit 0 if it matches, 1 if not (with a message)
  verify.py --all [MODELS_DIR]                   every cached <dir>/<name>/1/model.onnx
  verify.py --update NAME MODEL.onnx             rewrite models/reference/NAME.npz from MODEL.onnx
Environment: FLASHFIT_MODELS_SKIP_VERIFY=name[,name...] (or "all") installs without checking.

Inputs, bit-for-bit the same on every machine: a synthetic gradient built with integer
arithmetic, and PNG photos (PNG decoding is exact) resized by integer index sampling (no float
interpolation); float inputs are those uint8 values through one float32 multiply and/or add
(IEEE, correctly rounded on every CPU; numpy does not fuse them). The sha256 of every
input tensor is stored with the reference and checked first, so a changed fixture is reported
as such rather than as a model fault. MiniLM takes fixed token ids (written below).

Comparators (ratio = how much of its tolerance a comparison uses; it fails above 1):
  * dense outputs (logits, embeddings, raw SSD box encodings / class logits, CenterNet's heat
    map and sizes, the mask): every element must satisfy |got - ref| <= atol * RMS(ref) +
    rtol * |ref| (RMS over that output on that input), and cosine(got, ref) >= 1 - (atol+rtol)^2.
    The report names the worst element (e.g. [anchor 135, class 5]), both values, |diff| and
    the tolerance there.
  * post-NMS / top-k detections (ssdlite-pedestrian; centernet-coco's [100,6] list): compared
    as sets. Every detection scoring >= min_score in either list needs a partner in the other
    list (of any score, so one that slipped just under the cut still counts) with the same
    class, IoU >= 0.98 and |score difference| <= 0.003. Order, near-ties and detections under
    min_score (0.03 / 0.1, well above the 100th score) do not matter.
  * MoveNet multipose's six people ([1,6,56]): compared as sets too. Every person scoring >= 0.1
    in either list needs a partner with box IoU >= 0.98, |score difference| <= 0.003 and, on
    each keypoint the reference scores >= 0.2, position within 0.002 of the input side and
    keypoint score within 0.01. Slot order does not matter.

Tolerances, from models/test_verify.py on the cached models. "same model" = the largest ratio
over onnxruntime without graph optimisations / without the NCHWc layout / 1 or 3 threads / no
pre-packing / denormals flushed, every weight nudged by 1-4 ulp, and onnx's numpy reference
evaluator (entirely different kernels); "weakest fault" = the smallest ratio over one weight
tensor 3% off, a transposed kernel, BatchNorm (LayerNorm) unfolded in one layer, RGB<->BGR, a
wrong input scale, an ignored attention mask. Each tolerance sits between the two, >= 12x
from both (the centernet detection list alone is weak; its heat map catches what it misses):

  model / output                          tolerance             same model   weakest fault
  efficientnet-lite0 logits, embedding    atol = rtol = 2e-3      <= 0.03x       >= 68x
  ssd-mobilenetv2-oidv4 raw outputs       atol = rtol = 2e-3 *    <= 0.03x       >= 14x
  centernet-coco keypoints *, wh          atol = rtol = 2e-3      <= 0.011x      >= 14x
  centernet-coco detections               IoU .98, dscore .003    <= 0.005x      >= 1.3x
  ssdlite-pedestrian detections           IoU .98, dscore .003    <= 0.0005x     >= 12x
  selfie-segmentation mask                atol = rtol = 1e-2      <= 0.083x      >= 118x
  all-minilm-l6-v2 sentence_embedding     atol = rtol = 1e-3      <= 0.0085x     >= 15x

The mask is the most sensitive to last-bit noise (1-4 ulp of weight noise moves pooled
probabilities by up to ~8e-4), hence its wider bound; MiniLM the least, hence the narrower one,
so that one matmul weight 3% off still fails by 15x.

Storage (models/reference, ~0.6 MB with the person photo): float32, except * = float16 (the
SSD raw outputs, 1917 anchors x 28, and CenterNet's heat map). float16 rounds by up to 2^-11
relative; that rounding is allowed for on top of the tolerance, so it does not eat into the
margin for CPU differences. The 256x256 mask is kept as 2x2 block means and the 128x128x80 heat
map as 8x8 block maxima (every peak kept); both still fail every fault above by >= 14x.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE_DIR = os.path.join(HERE, "reference")
SKIP_ENV = "FLASHFIT_MODELS_SKIP_VERIFY"


# ---------------------------------------------------------------------------------------------
# Fixed inputs (integer arithmetic only)

def gradient(h=240, w=320):
    """RGB ramps with a red block (the old output_digest.py image), uint8 HxWx3."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1)
    img[h // 4:h * 3 // 4, w // 3:w * 2 // 3] = [200, 30, 30]
    return img.astype(np.uint8)


def read_png(path):
    """An 8-bit RGB PNG as uint8 HxWx3 RGB (PNG decoding is lossless, so the same everywhere)."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, path
    return np.ascontiguousarray(img[:, :, ::-1])


def sample(img, h, w):
    """Nearest-neighbour resize by integer index arithmetic: row i takes source row i*H//h."""
    rows = np.arange(h, dtype=np.int64) * img.shape[0] // h
    cols = np.arange(w, dtype=np.int64) * img.shape[1] // w
    return np.ascontiguousarray(img[rows][:, cols])


IMAGES = {
    "gradient": lambda: gradient(240, 320),
    "person": lambda: read_png(os.path.join(REFERENCE_DIR, "person_suit_256.png")),
    "cat": lambda: read_png(os.path.join(ROOT, "tests/fixtures/models/cat_224.png")),
    # ultralytics 8.4.190's assets/bus.jpg (AGPL-3.0 package), PIL Lanczos to 192x256: four people.
    "bus": lambda: read_png(os.path.join(REFERENCE_DIR, "bus_192x256.png")),
    "motorcycle": lambda: read_png(os.path.join(ROOT, "tests/fixtures/models/motorcycle_224.png")),
}


def nhwc(img, size, scale=None, offset=None):
    """[1,h,w,3] float32 of a sampled image, x * scale + offset in float32 (one rounding each)."""
    x = sample(img, size, size).astype(np.float32)
    if scale is not None:
        x = x * np.float32(scale)
    if offset is not None:
        x = x + np.float32(offset)
    return x[None]


# MiniLM: word-piece ids from the model's tokenizer.json ([CLS] ... [SEP]; every word here is a
# whole vocabulary entry). The first three are tests/fixtures/models/all-minilm-l6-v2.json's texts.
TEXTS = {  # case: (text, ids)
    "shirt": ("navy formal shirt", [101, 3212, 5337, 3797, 102]),
    "dress": ("a red floral summer dress", [101, 1037, 2417, 18686, 2621, 4377, 102]),
    "boots": ("black leather boots, slim fit, classic",
              [101, 2304, 5898, 6879, 1010, 11754, 4906, 1010, 4438, 102]),
    "long": ("a navy wool coat with brass buttons over a white cotton shirt and grey trousers for a "
             "winter wedding in the city",
             [101, 1037, 3212, 12121, 5435, 2007, 8782, 11287, 2058, 1037, 2317, 6557, 3797, 1998,
              4462, 15292, 2005, 1037, 3467, 5030, 1999, 1996, 2103, 102]),
}


def token_batch(texts):
    """A right-padded batch (pad id 0, attention mask 0 there)."""
    n = max(len(TEXTS[t][1]) for t in texts)
    ids = np.zeros((len(texts), n), np.int64)
    for i, t in enumerate(texts):
        ids[i, :len(TEXTS[t][1])] = TEXTS[t][1]
    return {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}


# ---------------------------------------------------------------------------------------------
# Comparators

class Finding:
    """One comparison: ratio = how far over (> 1) or under (<= 1) its tolerance it is."""

    def __init__(self, case, label, ratio, summary):
        self.case, self.label, self.ratio, self.summary = case, label, ratio, summary

    @property
    def ok(self):
        return self.ratio <= 1.0

    def __repr__(self):
        return f"{self.case}:{self.label} ratio={self.ratio:.3g} {self.summary}"


class Dense:
    """Elementwise |got - ref| <= atol * RMS(ref) + rtol * |ref|, plus cosine(got, ref) >= cos.

    The cosine bound, 1 - (atol + rtol)^2 unless given, is never stricter than the elementwise one
    (differences all within it give 1 - cosine <= (atol + rtol)^2 / 2): a summary figure and a
    second line of defence. A reference kept as float16 was rounded by up to 2^-11 relative: that
    rounding is allowed for on top (|diff| <= tolerance + 2^-11 |ref|), so it does not use up
    the allowance for CPU differences, and the ratio reported is (|diff| - rounding) / tolerance."""

    def __init__(self, atol=2e-3, rtol=2e-3, cos=None, axes=None, stored=np.float32):
        self.atol, self.rtol, self.axes, self.stored = atol, rtol, axes, stored
        self.cos = cos if cos is not None else 1 - (atol + rtol) ** 2

    def describe(self):
        s = f"|diff| <= {self.atol:g} x RMS(ref) + {self.rtol:g} x |ref|"
        if self.stored == np.float16:
            s += " (+ the float16 rounding of the stored reference, 2^-11 x |ref|)"
        return s + f", cosine >= {self.cos:.8g}"

    def rounding(self, ref):
        if self.stored == np.float16:
            return np.abs(ref) * 2.0 ** -11 + 2.0 ** -25  # (+ half the float16 subnormal step)
        return np.zeros_like(ref)

    def compare(self, case, label, ref, got):
        ref = np.asarray(ref, np.float64)
        got = np.asarray(got, np.float64)
        if got.shape != ref.shape:
            return Finding(case, label, np.inf, f"shape {list(got.shape)} instead of {list(ref.shape)}")
        if not np.all(np.isfinite(got)):
            i = np.unravel_index(int(np.argmax(~np.isfinite(got))), got.shape)
            return Finding(case, label, np.inf, f"non-finite value {got[i]} at {self.where(i)}")
        scale = float(np.sqrt(np.mean(ref ** 2))) or 1.0
        tol = self.atol * scale + self.rtol * np.abs(ref)
        diff = np.abs(got - ref)
        over = np.maximum(diff - self.rounding(ref), 0) / tol
        i = np.unravel_index(int(np.argmax(over)), over.shape)
        ratio = float(over[i])
        denom = float(np.linalg.norm(got) * np.linalg.norm(ref))
        cos = float(np.sum(got * ref) / denom) if denom > 0 else (1.0 if not got.any() and not ref.any() else 0.0)
        cos_ratio = max(0.0, 1.0 - cos - 1e-15) / (1.0 - self.cos)  # (less float64 rounding)
        summary = (f"max |diff| {diff.max():.3g} (RMS of the reference {scale:.3g}); worst against the "
                   f"tolerance at {self.where(i)}: reference {ref[i]:.6g}, got {got[i]:.6g}, "
                   f"|diff| {diff[i]:.3g} vs tolerance {tol[i] + self.rounding(ref)[i]:.3g} ({ratio:.3g}x); "
                   f"cosine {cos:.8f} (bound {self.cos:.8g})")
        return Finding(case, label, max(ratio, cos_ratio), summary)

    def where(self, i):
        if self.axes:
            return "[" + ", ".join(f"{a} {j}" for a, j in zip(self.axes, i)) + "]"
        return str(list(int(j) for j in i))


def iou(a, b):
    """IoU of [n,4] boxes a against [m,4] boxes b (corners in either (y,x) or (x,y) order)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda z: np.prod(np.clip(z[:, 2:] - z[:, :2], 0, None), axis=-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class DetectionSet:
    """Post-NMS / top-k detections as sets: every detection with score >= min_score, in either
    list, must have a partner in the other (any score) with the same class, IoU >= iou and
    |score difference| <= dscore. Near-ties, order and what lies under min_score do not matter."""

    def __init__(self, min_score, iou=0.98, dscore=0.003):
        self.min_score, self.iou, self.dscore = min_score, iou, dscore

    def describe(self):
        return (f"detections scoring >= {self.min_score:g} matched as sets: same class, IoU >= "
                f"{self.iou:g}, |score diff| <= {self.dscore:g}")

    def compare(self, case, label, ref, got):
        (rb, rs, rc), (gb, gs, gc) = ref, got
        rc, gc = np.round(rc).astype(np.int64), np.round(gc).astype(np.int64)  # ids held as floats
        if not (np.all(np.isfinite(gb)) and np.all(np.isfinite(gs))):
            return Finding(case, label, np.inf, "non-finite boxes or scores")
        worst, worst_text, problems = 0.0, "no detection above the cut on either side", []
        for side, (ab, as_, ac), (bb, bs, bc) in (("reference", (rb, rs, rc), (gb, gs, gc)),
                                                  ("converted", (gb, gs, gc), (rb, rs, rc))):
            keep = np.nonzero(as_ >= self.min_score)[0]
            used = set()
            ious = iou(ab[keep], bb) if len(keep) and len(bb) else np.zeros((len(keep), len(bb)))
            for k, i in sorted(enumerate(keep), key=lambda t: -as_[t[1]]):
                cand = [j for j in range(len(bb)) if bc[j] == ac[i] and j not in used]
                desc = f"{side} class {int(ac[i])} score {as_[i]:.4f} box {[round(float(v), 4) for v in ab[i]]}"
                if not cand:
                    problems.append(f"{desc} has no partner of that class")
                    worst = np.inf
                    continue
                # best partner: smallest combined badness
                bad = [max((1 - ious[k, j]) / (1 - self.iou), abs(bs[j] - as_[i]) / self.dscore) for j in cand]
                j = cand[int(np.argmin(bad))]
                r = min(bad)
                if r > 1:
                    problems.append(f"{desc}: nearest partner has IoU {ious[k, j]:.4f} (bound {self.iou:g}), "
                                    f"score {bs[j]:.4f} (|diff| {abs(bs[j] - as_[i]):.4f}, bound {self.dscore:g})")
                else:
                    used.add(j)
                if r > worst:
                    worst = r
                    worst_text = (f"{desc}: partner IoU {ious[k, j]:.5f}, score diff {abs(bs[j] - as_[i]):.2g}")
        n_ref, n_got = int((rs >= self.min_score).sum()), int((gs >= self.min_score).sum())
        summary = f"{n_ref} reference / {n_got} converted detections scoring >= {self.min_score:g}; "
        if problems:
            summary += f"{len(problems)} unmatched, e.g. " + "; ".join(problems[:3])
        else:
            summary += f"all matched; worst {worst_text}"
        return Finding(case, label, worst, summary)


class PoseSet:
    """MoveNet multipose's people ([1, 6, 56]: 17 (y, x, score) keypoints, then ymin, xmin, ymax,
    xmax, score, normalised) as sets: every person scoring >= min_score, in either list, needs a
    partner in the other (any score) with box IoU >= iou, |score diff| <= dscore, and on every
    keypoint the reference scores >= min_keypoint, |dy| and |dx| <= dxy (normalised) and
    |keypoint score diff| <= dks. Slot order and people under min_score do not matter."""

    def __init__(self, min_score=0.1, iou=0.98, dscore=0.003, min_keypoint=0.2, dxy=0.002, dks=0.01):
        self.min_score, self.iou, self.dscore = min_score, iou, dscore
        self.min_keypoint, self.dxy, self.dks = min_keypoint, dxy, dks

    def describe(self):
        return (f"people scoring >= {self.min_score:g} matched as sets: box IoU >= {self.iou:g}, "
                f"|score diff| <= {self.dscore:g}, keypoints (ref score >= {self.min_keypoint:g}) "
                f"|dxy| <= {self.dxy:g}, |dscore| <= {self.dks:g}")

    def badness(self, a, b):
        """How far over its tolerance partner b is for person a (rows of 56), and where."""
        box = lambda p: np.array([[p[52], p[51], p[54], p[53]]], np.float64)
        r = [((1 - iou(box(a), box(b))[0, 0]) / (1 - self.iou), "box IoU"),
             (abs(float(a[55]) - float(b[55])) / self.dscore, "score")]
        ka, kb = a[:51].reshape(17, 3).astype(np.float64), b[:51].reshape(17, 3).astype(np.float64)
        for k in range(17):
            if ka[k, 2] >= self.min_keypoint:
                r.append((max(abs(ka[k, 0] - kb[k, 0]), abs(ka[k, 1] - kb[k, 1])) / self.dxy,
                          f"keypoint {k} position"))
                r.append((abs(ka[k, 2] - kb[k, 2]) / self.dks, f"keypoint {k} score"))
        return max(r)

    def compare(self, case, label, ref, got):
        ref, got = np.asarray(ref).reshape(-1, 56), np.asarray(got).reshape(-1, 56)
        if not np.all(np.isfinite(got)):
            return Finding(case, label, np.inf, "non-finite output")
        worst, text, problems = 0.0, "nobody above the cut on either side", []
        for side, a, b in (("reference", ref, got), ("converted", got, ref)):
            for i in np.nonzero(a[:, 55] >= self.min_score)[0]:
                r, where = min(self.badness(a[i], b[j]) for j in range(len(b)))
                desc = f"{side} person {i} score {a[i, 55]:.4f}"
                if r > 1:
                    problems.append(f"{desc}: nearest partner off on {where} ({r:.3g}x its tolerance)")
                if r > worst:
                    worst, text = r, f"{desc}: worst on {where}"
        n = int((ref[:, 55] >= self.min_score).sum())
        summary = f"{n} people scoring >= {self.min_score:g}; "
        summary += (f"{len(problems)} unmatched, e.g. " + "; ".join(problems[:3])) if problems \
            else f"all matched; {text}"
        return Finding(case, label, worst, summary)


# ---------------------------------------------------------------------------------------------
# The models: which inputs, which outputs (reduced how), compared how

def pool(x, k, how):
    """Non-overlapping k x k block mean/max over the two spatial axes of [h,w] or [h,w,c]
    (in float64: numpy's float32 summation order may depend on its SIMD dispatch)."""
    x = np.asarray(x, np.float64)
    h, w = x.shape[:2]
    y = x.reshape(h // k, k, w // k, k, *x.shape[2:])
    return y.mean(axis=(1, 3)) if how == "mean" else y.max(axis=(1, 3))


def centernet_dets(o):
    d = o["tower_0/detections"]
    return d[:, :4], d[:, 4], d[:, 5]


def ssd_nms_dets(o):
    n = int(round(float(np.ravel(o["num_detections:0"])[0])))
    return o["detection_boxes:0"][:n], o["detection_scores:0"][:n], o["detection_classes:0"][:n]


class Spec:
    """runs: [(feed, [case per batch row])]; keep: output -> (reduce fn, stored dtype);
    checks: [(label, extract fn over the kept outputs, comparator)]."""

    def __init__(self, runs, keep, checks):
        self.runs, self.keep, self.checks = runs, keep, checks


def spec(name):
    """The inputs, kept outputs and comparisons of one model. Tolerances: see the module doc."""
    ident = lambda a: a
    keep, checks = {}, []

    def dense(output, label=None, reduce=ident, stored=np.float32, **tol):
        keep[output] = (reduce, stored)
        checks.append((label or output, lambda o: o[output], Dense(stored=stored, **tol)))

    if name == "efficientnet-lite0":
        cases = ["gradient", "person", "cat", "motorcycle"]
        x = np.concatenate([((sample(IMAGES[c](), 224, 224).astype(np.float32) - np.float32(127))
                             / np.float32(128)).transpose(2, 0, 1)[None] for c in cases])
        runs = [({"input": x}, cases)]  # one batch of 4: the batch axis is checked too
        dense("logits", atol=2e-3, rtol=2e-3, axes=("class",))
        dense("embedding", atol=2e-3, rtol=2e-3, axes=("dim",))
    elif name == "ssd-mobilenetv2-oidv4":
        runs = [({"normalized_input_image_tensor": nhwc(IMAGES[c](), 300, 1 / 127.5, -1.0)}, [c])
                for c in ["gradient", "person", "cat"]]
        dense("raw_outputs/box_encodings", stored=np.float16, atol=2e-3, rtol=2e-3, axes=("anchor", "coord"))
        dense("raw_outputs/class_predictions", stored=np.float16, atol=2e-3, rtol=2e-3,
              axes=("anchor", "class"))
    elif name == "centernet-coco":
        runs = [({"tower_0/images:0": nhwc(IMAGES[c](), 512)}, [c]) for c in ["person", "cat", "motorcycle"]]
        keep["tower_0/detections"] = (ident, np.float32)
        checks.append(("tower_0/detections", centernet_dets, DetectionSet(min_score=0.1)))
        dense("tower_0/keypoints", "tower_0/keypoints (8x8 block max)", lambda a: pool(a, 8, "max"),
              np.float16, atol=2e-3, rtol=2e-3, axes=("block row", "block col", "class"))
        dense("tower_0/wh", "tower_0/wh (8x8 block mean)", lambda a: pool(a, 8, "mean"),
              atol=2e-3, rtol=2e-3, axes=("block row", "block col", "channel"))
    elif name == "ssdlite-pedestrian":
        runs = [({"image_tensor:0": IMAGES[c]()[None]}, [c]) for c in ["gradient", "person", "cat", "motorcycle"]]
        for k in ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]:
            keep[k] = (ident, np.float32)
        checks.append(("detections", ssd_nms_dets, DetectionSet(min_score=0.03)))
    elif name == "selfie-segmentation":
        runs = [({"input_1:0": nhwc(IMAGES[c](), 256, 1 / 255)}, [c]) for c in ["person", "cat", "motorcycle"]]
        dense("activation_10:0", "activation_10:0 (2x2 block mean)", lambda a: pool(a[:, :, 0], 2, "mean"),
              atol=1e-2, rtol=1e-2, axes=("block row", "block col"))
    elif name == "movenet-multipose":
        runs = [({MOVENET_INPUT: sample(IMAGES[c](), 256, 256).astype(np.int32)[None]}, [c])
                for c in ["person", "bus", "cat"]]
        keep[MOVENET_OUTPUT] = (ident, np.float32)
        checks.append(("people", lambda o: o[MOVENET_OUTPUT], PoseSet()))
    elif name == "all-minilm-l6-v2":
        texts = list(TEXTS)  # a right-padded batch of three, then the long one alone
        runs = [(token_batch(texts[:3]), texts[:3]), (token_batch(texts[3:]), texts[3:])]
        dense("sentence_embedding", atol=1e-3, rtol=1e-3, axes=("dim",))
    else:
        raise KeyError(name)
    return Spec(runs, keep, checks)


MODELS = ["efficientnet-lite0", "ssd-mobilenetv2-oidv4", "ssdlite-pedestrian", "centernet-coco",
          "selfie-segmentation", "movenet-multipose", "all-minilm-l6-v2"]
MOVENET_INPUT, MOVENET_OUTPUT = "input", "output_0"


# ---------------------------------------------------------------------------------------------
# Running and storing

def session(model, options=None):
    """An onnxruntime CPU session from a path or serialised bytes."""
    import onnxruntime as ort
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def input_digest(feed):
    h = hashlib.sha256()
    for k in sorted(feed):
        a = np.ascontiguousarray(feed[k])
        h.update(f"{k}:{a.dtype.str}:{list(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def evaluate(s, sp, run=None, only=None):
    """{case: {output: reduced array}} and {case: input digest}. run(feed) -> {name: array}
    replaces the session (the test feeds other evaluators through it); only: those cases."""
    out, digests = {}, {}
    names = list(sp.keep)
    for feed, cases in sp.runs:
        if only is not None and not set(cases) & set(only):
            continue
        res = run(feed) if run else dict(zip(names, s.run(names, feed)))
        for row, case in enumerate(cases):
            digests[case] = input_digest({k: v[row:row + 1] for k, v in feed.items()})
            out[case] = {k: np.asarray(fn(np.asarray(res[k])[row]), np.float32) for k, (fn, _) in sp.keep.items()}
    return out, digests


def reference_path(name):
    return os.path.join(REFERENCE_DIR, f"{name}.npz")


def save_reference(name, sp, outputs, digests, model_path):
    import onnxruntime as ort
    arrays = {}
    for case, outs in outputs.items():
        for k, a in outs.items():
            arrays[f"{case}/{k}"] = a.astype(sp.keep[k][1])
    meta = {"model": name,
            "generator": f"models/verify.py --update; onnxruntime {ort.__version__}, numpy {np.__version__}",
            "model_sha256": hashlib.sha256(open(model_path, "rb").read()).hexdigest(),
            "input_sha256": digests,
            "checks": {label: comp.describe() for label, _, comp in sp.checks},
            "note": "outputs of MODEL on fixed inputs (models/verify.py builds them); the tolerances "
                    "and why they are what they are: models/verify.py's docstring, models/README.md"}
    arrays["_meta"] = np.array(json.dumps(meta, indent=1, sort_keys=True))
    os.makedirs(REFERENCE_DIR, exist_ok=True)
    tmp = reference_path(name) + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for k in sorted(arrays):  # fixed names, order and timestamps: same content, same bytes
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[k]), allow_pickle=False)
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue(), compresslevel=9)
    os.replace(tmp, reference_path(name))


def load_reference(name):
    with np.load(reference_path(name), allow_pickle=False) as z:
        meta = json.loads(z["_meta"].item())
        ref = {}
        for k in z.files:
            if k == "_meta":
                continue
            case, out = k.split("/", 1)
            ref.setdefault(case, {})[out] = z[k].astype(np.float32)
    return meta, ref


def compare(name, sp, ref, got):
    findings = []
    for case in ref:
        for label, extract, comp in sp.checks:
            if case not in got:
                findings.append(Finding(case, label, np.inf, "no output for this input"))
                continue
            findings.append(comp.compare(case, label, extract(ref[case]), extract(got[case])))
    return findings


def check(name, model, options=None, run=None, only=None):
    """Runs `model` (path or bytes) and compares it with the reference: (findings, inputs that
    differ from the reference's). Used by main() and models/test_verify.py."""
    sp = spec(name)
    meta, ref = load_reference(name)
    if only is not None:
        ref = {c: v for c, v in ref.items() if c in only}
    s = None if run else session(model, options)
    got, digests = evaluate(s, sp, run, only)
    bad_inputs = [c for c in ref if digests.get(c) != meta["input_sha256"].get(c)]
    return compare(name, sp, ref, got), bad_inputs


# ---------------------------------------------------------------------------------------------
# Command line

def skipped(name):
    v = os.environ.get(SKIP_ENV, "")
    names = {s.strip() for s in v.replace(",", " ").split()}
    return name in names or "all" in names


def machine():
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import onnxruntime as ort
        rt = f"onnxruntime {ort.__version__}"
    except ImportError:
        rt = "no onnxruntime"
    return f"{rt}, numpy {np.__version__}, CPU {cpu}"


def explain(name, findings, bad_inputs):
    """What differed, in one or two sentences."""
    if bad_inputs:
        return (f"the fixed input(s) {', '.join(bad_inputs)} are not the bytes the reference was made "
                f"from (a fixture image under models/reference or tests/fixtures/models changed, or "
                f"this machine decodes PNG differently), so the outputs cannot be compared. ")
    bad = [f for f in findings if not f.ok]
    worst = max(bad, key=lambda f: f.ratio)
    comp = [c for l, _, c in spec(name).checks if l == worst.label][0]
    others = sorted({f"{f.label} on '{f.case}'" for f in bad if f is not worst})
    text = (f"output {worst.label} on input '{worst.case}' is outside the tolerance ({comp.describe()}): "
            f"{worst.summary}" + (f"; {worst.ratio:.3g}x the tolerance" if np.isfinite(worst.ratio) else "")
            + (f". Also outside: {', '.join(others)}" if others else "") + ". ")
    if worst.ratio < 3:
        text += ("That is only just outside: the same model on other kernels stayed below 0.1x of these "
                 "tolerances in our tests, so this may be an unusually different CPU or onnxruntime "
                 "build rather than a broken model; please report it. ")
    else:
        text += ("The same model on other kernels (thread counts, optimisation levels, weights "
                 "nudged by a few ulp, a numpy reference implementation) stayed below 0.1x of these "
                 "tolerances, so this file computes something else: a broken download or conversion. ")
    return text


def failure_message(name, model_path, dest, what):
    rel_ref = os.path.relpath(reference_path(name), ROOT)
    dest = os.path.abspath(dest)
    name_dir = os.path.dirname(os.path.dirname(dest))  # <dir>/<name>/<version>/model.onnx
    retry = (f"rm -rf {name_dir} && bash models/fetch.sh" if os.path.basename(name_dir) == name
             else "bash models/fetch.sh into an empty FLASHFIT_MODELS_DIR")
    py = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    return (f"verify.py: {name} ({model_path}) does not match its reference {rel_ref}: {what}"
            f"[{machine()}] Next: (1) retry from scratch: {retry}; (2) if it fails again, report it "
            f"in an issue with this whole message; (3) to install the model anyway, rerun with "
            f"{SKIP_ENV}={name} bash models/fetch.sh, and if the model was changed on purpose, then "
            f"regenerate its reference with `{py} models/verify.py --update {name} {dest}` and "
            f"commit {rel_ref}.")


def verify_one(name, model_path, dest=None, verbose=False):
    if skipped(name):
        print(f"verify.py: WARNING: {name} not verified ({SKIP_ENV}={os.environ[SKIP_ENV]})", file=sys.stderr)
        return True
    if not os.path.exists(reference_path(name)):
        print(f"verify.py: no reference for {name} ({reference_path(name)}); make one with "
              f"`python models/verify.py --update {name} MODEL.onnx`", file=sys.stderr)
        return False
    try:
        findings, bad_inputs = check(name, model_path)
    except Exception as e:  # noqa: BLE001 - a model that does not load or run is a failed check
        what = f"it does not load or run on the fixed inputs: {type(e).__name__}: {str(e)[:400]}. "
        print(failure_message(name, model_path, dest or model_path, what), file=sys.stderr)
        return False
    if bad_inputs or not all(f.ok for f in findings):
        print(failure_message(name, model_path, dest or model_path, explain(name, findings, bad_inputs)),
              file=sys.stderr)
        return False
    worst = max(findings, key=lambda f: f.ratio)
    print(f"verify.py: {name} OK ({len(findings)} comparisons; largest {worst.ratio:.3g}x of its "
          f"tolerance: {worst.label} on '{worst.case}')")
    if verbose:
        for f in findings:
            print(f"  {f.case:12s} {f.label:36s} {f.ratio:9.3g}x  {f.summary}")
    return True


def update(name, model_path):
    sp = spec(name)
    got, digests = evaluate(session(model_path), sp)
    for label, extract, comp in sp.checks:  # a detection cut must sit above the top-k tail
        if isinstance(comp, DetectionSet):
            for case, o in got.items():
                _, s, _ = extract(o)
                if len(s) >= 100 and s.min() + 1.5 * comp.dscore > comp.min_score:
                    sys.exit(f"{name}: on '{case}' the 100th detection scores {s.min():.3f}, too close to "
                             f"min_score {comp.min_score}: raise min_score in verify.py")
    save_reference(name, sp, got, digests, model_path)
    # what will be compared is the stored (possibly float16) copy: it must pass against itself
    findings, bad = check(name, model_path)
    worst = max(findings, key=lambda f: f.ratio)
    print(f"wrote {reference_path(name)} ({os.path.getsize(reference_path(name))} bytes); "
          f"rerun against it: largest {worst.ratio:.3g}x of the tolerance ({worst.label} on '{worst.case}')")
    if bad or not all(f.ok for f in findings):
        sys.exit("the model does not pass against its own stored reference: tolerances too tight "
                 "for the stored precision")


def main():
    parts = __doc__.split("\n\n")
    ap = argparse.ArgumentParser(description=parts[0], epilog=parts[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="verify every cached model in MODELS_DIR")
    ap.add_argument("--update", action="store_true", help="rewrite NAME's reference from MODEL.onnx")
    ap.add_argument("--dest", help="where fetch.sh will install the file (for the message)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every comparison")
    ap.add_argument("args", nargs="*", help="NAME MODEL.onnx, or MODELS_DIR with --all")
    a = ap.parse_args()
    if a.all:
        if a.update or len(a.args) > 1:
            ap.error("--all takes at most MODELS_DIR")
        d = a.args[0] if a.args else os.environ.get("FLASHFIT_MODELS_DIR") or (
            "/var/lib/flashfit/models" if os.geteuid() == 0 else os.path.expanduser("~/.cache/flashfit/models"))
        ok, n = True, 0
        for name in MODELS:
            p = os.path.join(d, name, "1", "model.onnx")
            if not os.path.exists(p):
                print(f"verify.py: {name} not cached in {d}, skipped")
                continue
            n += 1
            ok = verify_one(name, p, verbose=a.verbose) and ok
        if n == 0:
            print(f"verify.py: no cached model in {d} (bash models/fetch.sh fetches them)", file=sys.stderr)
            return 1
        print(f"verify.py: {n} cached model(s) checked, {'all match' if ok else 'SOME DO NOT MATCH'}")
        return 0 if ok else 1
    if len(a.args) != 2:
        ap.error("expected NAME MODEL.onnx")
    name, path = a.args
    if name not in MODELS:
        ap.error(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if a.update:
        update(name, path)
        return 0
    return 0 if verify_one(name, path, a.dest, a.verbose) else 1


if __name__ == "__main__":
    sys.exit(main())
