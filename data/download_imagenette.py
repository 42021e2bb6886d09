#!/usr/bin/env python3
"""Download, verify and unpack Imagenette (the ten-class ImageNet subset) for `concepts`.

    python data/download_imagenette.py [--dest data/imagenette] [--size 160|320|full] [--sha256 HEX]

Then: concepts extract data/imagenette/imagenette2-160/val --out runs/imagenette
(class folders are WordNet ids, so each maps to its ImageNet logit; see imagenette_labels.csv).
"""
import argparse
import sys

from concepts.datasets.download import IMAGENETTE_URLS, prepare_imagenette
from concepts.errors import ConceptsError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default="data/imagenette")
    parser.add_argument("--size", choices=sorted(IMAGENETTE_URLS), default="160")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    args = parser.parse_args()
    try:
        val = prepare_imagenette(args.dest, args.size, args.sha256)
    except ConceptsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Imagenette ready: {val}\nnext: concepts extract {val} --out runs/imagenette")
    return 0


if __name__ == "__main__":
    sys.exit(main())
