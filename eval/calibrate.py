#!/usr/bin/env python3
"""Fits the `is_clothing` calibration (flashfit-vision's clothing::CALIBRATION) on the labelled set.

Reads `flashfit eval --set DIR --json` (every photo's evidence: the head's clothing probability,
the ImageNet map's clothing mass, the best person / garment / other detection) and fits an
L2-regularised logistic regression of the hand label `clothing` on
[logit(mass), logit(imagenet), person, garment, other]. Prints the coefficients as the Rust
constant, and what they give at the threshold: in-sample and leave-one-out (each photo scored by
a model fitted without it), so the figures say how much of the fit is memorising the set.

Usage: flashfit eval --set DIR --json > eval.json; python eval/calibrate.py eval.json [C [THRESHOLD]]
(the shipped constants: C = 10, threshold 0.6, `[classify] clothing_threshold`)
(numpy only)
"""
import json
import sys

import numpy as np

FIELDS = ["mass_logit", "imagenet_logit", "person", "garment", "other"]
THRESHOLD = 0.6


def logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def features(photos):
    x, y, files = [], [], []
    for p in photos:
        e = p["prediction"].get("evidence")
        if e is None:  # never reached classify (rejected or failed before it)
            continue
        x.append([logit(e["mass"]), logit(e.get("imagenet", 0.0)), e["person"], e["garment"],
                  e["other"]])
        y.append(1.0 if p["labels"]["clothing"] else 0.0)
        files.append(p["file"])
    return np.array(x), np.array(y), files


def fit(x, y, c):
    """Newton's method on the L2-penalised log-likelihood (penalty 1/(2C)·|w|², bias free)."""
    xb = np.c_[np.ones(len(x)), x]
    w = np.zeros(xb.shape[1])
    penalty = np.r_[0.0, np.full(x.shape[1], 1.0 / c)]
    for _ in range(100):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def score(w, x):
    return 1 / (1 + np.exp(-(w[0] + x @ w[1:])))


def rates(p, y, threshold):
    return (p[y == 0] < threshold).mean(), (p[y == 1] < threshold).mean()


def main():
    if len(sys.argv) not in (2, 3, 4):
        raise SystemExit(__doc__)
    c = float(sys.argv[2]) if len(sys.argv) >= 3 else 10.0
    threshold = float(sys.argv[3]) if len(sys.argv) == 4 else THRESHOLD
    with open(sys.argv[1]) as f:
        photos = json.load(f)["photos"]
    x, y, files = features(photos)
    w = fit(x, y, c)
    loo = np.array([score(fit(np.delete(x, i, 0), np.delete(y, i), c), x[i:i + 1])[0]
                    for i in range(len(y))])
    inside = score(w, x)
    print("pub const CALIBRATION: Calibration = Calibration {")
    print(f"    bias: {w[0]:.3f},")
    for name, v in zip(FIELDS, w[1:]):
        print(f"    {name}: {v:.3f},")
    print("};")
    for name, p in (("in-sample", inside), ("leave-one-out", loo)):
        nc, cl = rates(p, y, threshold)
        print(f"{name:14} at {threshold}: non-clothing rejected {nc:.1%} of {int((y == 0).sum())}, "
              f"clothing rejected {cl:.1%} of {int((y == 1).sum())}")
    for f, yy, pi, pl in zip(files, y, inside, loo):
        if (pl < threshold) == (yy == 1):
            print(f"  wrong when left out: {f} (clothing={bool(yy)}, {pi:.3f} in-sample, "
                  f"{pl:.3f} left out)")


if __name__ == "__main__":
    main()
