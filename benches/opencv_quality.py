#!/usr/bin/env python3
"""The seed's Python/OpenCV ImageQualityChecker, timed on the same images as `flashfit bench quality`.

  make <fixtures_dir> <out_dir> <count>   write ~1024 px JPEGs made from the fixture photos
  run <dir> <seconds>                     time ImageQualityChecker.run_all over them, one thread
Prints one JSON object.
"""
import json, os, sys, time
import cv2
import numpy as np


class ImageQualityChecker:  # verbatim from seed 001 "Image Quality Check"
    def check_resolution(self, image: np.ndarray, min_size: int = 224) -> bool:
        h, w = image.shape[:2]
        return min(h, w) >= min_size

    def check_blur(self, image: np.ndarray, threshold: float = 100) -> tuple:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        variance = cv2.Laplacian(gray, cv2.CV_64F).var()
        return variance >= threshold, variance

    def check_exposure(self, image: np.ndarray) -> tuple:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        mean_brightness = gray.mean()
        if mean_brightness < 40:
            return False, "too_dark"
        if mean_brightness > 220:
            return False, "too_bright"
        return True, "ok"

    def run_all(self, image_path: str) -> dict:
        image = cv2.imread(image_path)
        result = {"passed": True, "warnings": [], "errors": []}
        if not self.check_resolution(image):
            result["passed"] = False
            result["errors"].append("Image too small (min 224x224)")
            return result
        is_sharp, blur_score = self.check_blur(image)
        if not is_sharp:
            result["warnings"].append(f"Image may be blurry ({blur_score:.0f})")
        is_exposed, status = self.check_exposure(image)
        if not is_exposed:
            result["warnings"].append(f"Image is {status}")
        return result


def make(src, out, count):
    os.makedirs(out, exist_ok=True)
    photos = sorted(f for f in os.listdir(src) if f.endswith(".jpg") and "small" not in f)
    made = []
    for i in range(count):
        img = cv2.imread(os.path.join(src, photos[i % len(photos)]))
        h, w = img.shape[:2]
        s = 1024 / max(h, w)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        if i >= len(photos):  # vary the content a little so files differ
            img = cv2.flip(img, 1)
        p = os.path.join(out, f"bench_{i:03d}.jpg")
        cv2.imwrite(p, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        made.append(p)
    print(json.dumps({"images": len(made), "dir": out}))


def run(d, seconds):
    cv2.setNumThreads(1)
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jpg"))
    checker = ImageQualityChecker()
    for f in files:  # warm the page cache and OpenCV
        checker.run_all(f)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for f in files:
            checker.run_all(f)
            n += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"images": n, "seconds": elapsed, "images_per_s": n / elapsed,
                      "opencv": cv2.__version__, "threads": cv2.getNumThreads()}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        run(sys.argv[2], float(sys.argv[3]))
