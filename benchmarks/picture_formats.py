"""Photo encoders for the atlas: bytes, SSIM, PSNR and encoding time of WebP and AVIF settings against the atlas's
default (WebP quality 70, method 3), measured in the same run on the same photos.

Each photo is the centre square of an Imagenette photo (../shared/data) resized to ``--side`` pixels, as the
atlas's photo files; SSIM and PSNR compare the decoded file with that square.

    python benchmarks/picture_formats.py --photos 50 --side 192 --repeat 2
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, features

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
              ROOT.parent / "shared" / "data") / "imagenette" / "val50"

SETTINGS = [("webp q70 m3 (default)", "WEBP", {"quality": 70, "method": 3}),
            ("webp q70 m6", "WEBP", {"quality": 70, "method": 6}),
            ("avif q60 speed 9", "AVIF", {"quality": 60, "speed": 9}),
            ("avif q60 speed 8", "AVIF", {"quality": 60, "speed": 8}),
            ("avif q55 speed 9", "AVIF", {"quality": 55, "speed": 9}),
            ("avif q50 speed 9", "AVIF", {"quality": 50, "speed": 9}),
            ("avif q50 speed 8", "AVIF", {"quality": 50, "speed": 8})]


def squares(n: int, side: int) -> list[Image.Image]:
    paths = sorted(SHARED.glob("*/*.JPEG"))
    if not paths:
        sys.exit(f"no photos under {SHARED}")
    out = []
    for path in paths[:: max(1, len(paths) // n)][:n]:
        with Image.open(path) as photo:
            photo = photo.convert("RGB")
            s = min(photo.size)
            left, top = (photo.width - s) // 2, (photo.height - s) // 2
            out.append(photo.crop((left, top, left + s, top + s)).resize((side, side), Image.LANCZOS))
    return out


def measure(photos, fmt: str, options: dict) -> tuple[float, float, float, float]:
    """(bytes, SSIM, PSNR, ms) per photo."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    files, t0 = [], time.perf_counter()
    for photo in photos:
        buffer = io.BytesIO()
        photo.save(buffer, format=fmt, **options)
        files.append(buffer.getvalue())
    ms = (time.perf_counter() - t0) / len(photos) * 1000
    ssim = psnr = 0.0
    for photo, data in zip(photos, files):
        with Image.open(io.BytesIO(data)) as decoded:
            b = np.asarray(decoded.convert("RGB"))
        a = np.asarray(photo)
        ssim += structural_similarity(a, b, channel_axis=2)
        psnr += peak_signal_noise_ratio(a, b)
    k = len(photos)
    return sum(map(len, files)) / k, ssim / k, psnr / k, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--side", type=int, default=192)
    parser.add_argument("--repeat", type=int, default=2, help="timing repeats (bytes and quality do not vary)")
    args = parser.parse_args()
    photos = squares(args.photos, args.side)
    settings = [s for s in SETTINGS if s[1] != "AVIF" or features.check("avif")]
    if len(settings) < len(SETTINGS):
        print("this Pillow has no AVIF: WebP only")
    print(f"{len(photos)} photos, {args.side} px, Pillow {Image.__version__}, libavif {features.version('avif')}")
    rows = {name: [measure(photos, fmt, options) for _ in range(args.repeat)] for name, fmt, options in settings}
    base_bytes = rows[settings[0][0]][0][0]
    base_ms = [r[3] for r in rows[settings[0][0]]]
    print(f"{'setting':24s} {'bytes':>7s} {'x default':>9s} {'SSIM':>6s} {'PSNR':>6s} {'ms/photo':>12s} "
          f"{'x default':>11s}")
    for name, runs in rows.items():
        size, ssim, psnr = runs[0][:3]
        ms = [r[3] for r in runs]
        ratio = [m / b for m, b in zip(ms, base_ms)]
        print(f"{name:24s} {size:7.0f} {size / base_bytes:9.2f} {ssim:6.3f} {psnr:6.2f} "
              f"{min(ms):5.1f}-{max(ms):<5.1f} {min(ratio):5.2f}-{max(ratio):<5.2f}")


if __name__ == "__main__":
    main()
