#!/usr/bin/env python3
"""Builds the training set of FlashFit's shipped taxonomy head (`flashfit train head --manifest`).

Disjoint from the evaluation set (eval/labels.toml) by construction: Fashion-MNIST's *train*
split (the evaluation set uses its t10k split), garments this script draws with its own seeds
and colours, and Debian's tuxpaint-stamps-default photos and drawings (the evaluation set uses
none). Classes are taxonomy categories plus `not_clothing`; the negatives are everything a
wardrobe upload should not be: animals, food, plants, vehicles, buildings, household objects,
symbols, space, plus charts, text pages, textures and blank photos drawn here. Each stamp is shown three
ways (on white, on a flat colour, and as a dark grey silhouette on white, the way Fashion-MNIST
product shots look) so the head learns shapes, not the styles of its sources.

Writes OUT/*.png and OUT/manifest.csv (path,label,split; every fifth example of a class is
held out). Reruns rewrite the same set (fixed seeds).

Usage: $FLASHFIT_VENV/bin/python eval/build_train.py OUT   (numpy + opencv-python-headless)
"""
import gzip
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_set import FMNIST, silhouette, write  # noqa: E402

STAMPS = "/usr/share/tuxpaint/stamps"
# Fashion-MNIST's classes as taxonomy categories (flashfit-models' fashion_mnist::CLASSES).
FMNIST_CATEGORIES = ["t_shirt", "dress_pants", "sweater", "casual_dress", "coat", "sandals",
                     "dress_shirt", "sneakers", "bag", "boots"]
PER_FMNIST_CLASS = 200
# Tux Paint's garment stamps (file stem → category); other files under clothes/ are not garments
# in the taxonomy (buttons, pegs, gloves, socks, armour) and are left out rather than mislabelled.
STAMP_GARMENTS = {"t_tshirt": "t_shirt", "t_shirt": "dress_shirt", "t_poloshirt": "polo",
                  "t_pants": "jeans", "t_jacket": "bomber", "t_scarf": "scarf",
                  "t_baseballcap": "hat", "green_fedora": "hat", "blue_fedora": "hat",
                  "feathered_hat": "hat", "sombrero": "hat", "tophat": "hat",
                  "propeller_hat": "hat"}
# Not used as negatives either: they show people (whose clothes are clothing).
SKIP_DIRS = ("clothes", "people", "cartoon")
RENDER_CATEGORIES = {"t_shirt": "t_shirt", "trousers": "chinos", "shorts": "shorts",
                     "skirt": "skirt", "dress": "casual_dress"}


def stamp_rgba(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3:
        return None
    if img.shape[2] == 3:
        img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    return img


def on_canvas(rgba, background, rng, side=320):
    """The stamp scaled into a side x side canvas of `background` (BGR), randomly placed."""
    h, w = rgba.shape[:2]
    s = rng.uniform(0.6, 0.9) * side / max(h, w)
    rgba = cv2.resize(rgba, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_CUBIC)
    h, w = rgba.shape[:2]
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = background
    y, x = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
    a = rgba[:, :, 3:4].astype(np.float32) / 255.0
    canvas[y:y + h, x:x + w] = rgba[:, :, :3] * a + canvas[y:y + h, x:x + w] * (1 - a)
    return canvas.astype(np.uint8)


def silhouette_style(img):
    """A dark grey garment-shot look: grey, 28 px, upscaled, on white."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (28, 28), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(cv2.resize(small, (280, 280), interpolation=cv2.INTER_LINEAR),
                        cv2.COLOR_GRAY2BGR)


def stamp_views(path, rng):
    rgba = stamp_rgba(path)
    if rgba is None:
        return []
    colour = rng.integers(40, 230, 3).astype(np.float32)
    white = on_canvas(rgba, (245, 245, 245), rng)
    views = [white, on_canvas(rgba, colour, rng), silhouette_style(white)]
    if rng.random() < 0.5:
        views = [cv2.flip(v, 1) for v in views]
    return views


def chart(rng):
    h, w = 360, 480
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.line(img, (40, 320), (460, 320), (0, 0, 0), 2)
    cv2.line(img, (40, 320), (40, 20), (0, 0, 0), 2)
    kind = rng.integers(0, 3)
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    n = int(rng.integers(4, 12))
    ys = rng.uniform(40, 300, n)
    xs = np.linspace(60, 440, n)
    if kind == 0:
        for x, y in zip(xs, ys):
            cv2.rectangle(img, (int(x) - 12, int(y)), (int(x) + 12, 320), colour, -1)
    elif kind == 1:
        pts = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(img, [pts], False, colour, 2)
    else:
        for _ in range(int(rng.integers(20, 120))):
            cv2.circle(img, (int(rng.uniform(50, 450)), int(rng.uniform(30, 310))), 3, colour, -1)
    for i in range(5):
        cv2.putText(img, str(i * 10), (8, 320 - i * 60), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return img


def text_page(rng):
    img = np.full((400, 320, 3), int(rng.integers(225, 256)), np.uint8)
    words = ["the", "wardrobe", "data", "model", "report", "quarter", "total", "invoice",
             "photo", "stream", "table", "value", "figure", "summary", "note", "page"]
    for row in range(int(rng.integers(8, 20))):
        line = " ".join(rng.choice(words, int(rng.integers(3, 7))))
        cv2.putText(img, line, (12, 28 + row * 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (20, 20, 20), 1, cv2.LINE_AA)
    return img


def texture(rng):
    noise = rng.normal(0, 1, (64, 64, 3)).astype(np.float32)
    k = int(rng.choice([1, 3, 5, 9]))
    noise = cv2.GaussianBlur(noise, (k, k), 0) if k > 1 else noise
    base = rng.uniform(40, 200, 3)
    img = np.clip(base + noise * rng.uniform(10, 60), 0, 255).astype(np.uint8)
    return cv2.resize(img, (320, 320), interpolation=cv2.INTER_NEAREST if rng.random() < 0.5
                      else cv2.INTER_LINEAR)


def flat(rng):
    """A blank photo: one colour, or a soft gradient between two (a wall, a lens cap, the sky)."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if rng.random() < 0.5:  # a grey: walls, paper, a lens cap
        a, b = np.full(3, a[0]), np.full(3, b[0])
    t = np.linspace(0, 1, 320)[:, None, None] if rng.random() < 0.5 else np.zeros((320, 1, 1))
    if rng.random() < 0.5:
        t = t.transpose(1, 0, 2)
    img = a + (b - a) * t + rng.normal(0, 2, (320, 320, 3)) * (rng.random() < 0.5)
    return np.clip(np.broadcast_to(img, (320, 320, 3)), 0, 255).astype(np.uint8)


def render_garment(shape, rgb, seed):
    w, h = 400, 480
    rng = np.random.default_rng(10_000 + seed)
    canvas = np.full((h, w, 3), int(rng.integers(225, 250)), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    pts = silhouette(shape, w, h).astype(np.float32)
    pts = (pts - [w / 2, h / 2]) * rng.uniform(0.8, 1.0) + [w / 2, h / 2]
    cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    cloth = np.empty((h, w, 3), np.float32)
    cloth[:] = rgb[::-1]
    xs = np.arange(w, dtype=np.float32)
    cloth *= (1.0 + 0.08 * np.sin(xs / rng.uniform(15, 30) + seed))[None, :, None]
    cloth += rng.normal(0, 6, (h, w, 1))
    canvas[mask > 0] = np.clip(cloth, 0, 255).astype(np.uint8)[mask > 0]
    return cv2.GaussianBlur(canvas, (3, 3), 0)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if not os.path.isdir(STAMPS):
        raise SystemExit(f"{STAMPS} missing: install Debian package tuxpaint-stamps-default")
    rng = np.random.default_rng(29)
    rows = []

    def add(img, label, name):
        file = f"{label}_{name}.png"
        write(os.path.join(out, file), img)
        rows.append((file, label))

    x = np.frombuffer(gzip.open(FMNIST + "train-images-idx3-ubyte.gz").read(), np.uint8,
                      offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(FMNIST + "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    for cls, category in enumerate(FMNIST_CATEGORIES):
        for index in np.flatnonzero(y == cls)[:PER_FMNIST_CLASS]:
            img = cv2.resize(255 - x[index], (280, 280), interpolation=cv2.INTER_LINEAR)
            add(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), category, f"fmnist{index}")
    for shape, category in RENDER_CATEGORIES.items():
        for i in range(30):
            add(render_garment(shape, rng.integers(10, 245, 3), i), category, f"render_{shape}{i}")
    stamps = []
    for root, _dirs, files in os.walk(STAMPS):
        stamps += [os.path.join(root, f) for f in files if f.endswith(".png")]
    for path in sorted(stamps):
        rel = os.path.relpath(path, STAMPS)
        stem = os.path.splitext(os.path.basename(path))[0]
        top = rel.split(os.sep)[0]
        if top == "clothes":
            category = STAMP_GARMENTS.get(stem)
            if category is None:
                continue
            for k in range(4):
                for j, view in enumerate(stamp_views(path, rng)):
                    add(view, category, f"stamp_{stem}_{k}{j}")
        elif top not in SKIP_DIRS:
            slug = rel.replace(os.sep, "_")[:-4]
            for j, view in enumerate(stamp_views(path, rng)):
                add(view, "not_clothing", f"stamp_{slug}_{j}")
    for i in range(120):
        add(flat(rng), "not_clothing", f"flat_extra{i}")
    for i in range(120):
        add(chart(rng), "not_clothing", f"chart{i}")
        add(text_page(rng), "not_clothing", f"text{i}")
        add(texture(rng), "not_clothing", f"texture{i}")
        add(flat(rng), "not_clothing", f"flat{i}")
    seen = {}
    with open(os.path.join(out, "manifest.csv"), "w") as f:
        f.write("path,label,split\n")
        for file, label in rows:
            k = seen.get(label, 0)
            seen[label] = k + 1
            f.write(f"{file},{label},{'test' if k % 5 == 4 else 'train'}\n")
    print(f"training set: {len(rows)} images in {out} "
          f"({sum(n for c, n in seen.items() if c != 'not_clothing')} garments, "
          f"{seen.get('not_clothing', 0)} not clothing, {len(seen)} classes)")


if __name__ == "__main__":
    main()
