"""`concepts extract IMAGES --out RUN`: stage 1."""
from __future__ import annotations

import sys

from .common import add_classes, add_common, add_device


def register(sub) -> None:
    p = sub.add_parser("extract", help="cache activations of crops or feature-map positions per class (HDF5)",
                       description="Run images through the model up to a layer and cache the activations, "
                                   "one HDF5 file per class in RUN/activations/.")
    p.add_argument("images", help="a folder with one sub-folder per class, or a text file 'path label' per line")
    p.add_argument("--out", required=True, help="the run folder")
    p.add_argument("--model", default=None, help="a timm architecture name (default: bundled EfficientNet-Lite0)")
    p.add_argument("--checkpoint", default=None, help="local state dict / timm checkpoint for --model")
    p.add_argument("--random-init", action="store_true", help="random weights (for tests and benchmarks)")
    p.add_argument("--layer", default=None, help="module name to cut at (default: last feature map)")
    p.add_argument("--mode", choices=["crops", "patches"], default="crops",
                   help="crops: CRAFT grid of square crops, one pooled row each; patches: one row per position")
    p.add_argument("--patch-size", type=int, default=64, help="crop size in input pixels (crops mode)")
    p.add_argument("--max-images", type=int, default=None, help="at most N images per class")
    p.add_argument("--labels", default=None, help="CSV 'folder,index' mapping class folders to logits")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="DataLoader decoding workers")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None)
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="storage dtype")
    p.add_argument("--compression", choices=["none", "lzf", "gzip"], default="none",
                   help="HDF5 compression of the activations (default none: fastest writes)")
    add_classes(p)
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..extract import extract_run

    files = extract_run(
        args.images, args.out, model=args.model, checkpoint=args.checkpoint, layer=args.layer, mode=args.mode,
        patch_size=args.patch_size, classes=args.classes, max_images=args.max_images, labels=args.labels,
        batch_size=args.batch_size, workers=args.workers, device=args.device, precision=args.precision,
        threads=args.threads, dtype=args.dtype, compression=args.compression, overwrite=args.overwrite, progress=not args.quiet,
        pretrained=not args.random_init,
    )
    print(f"extract: {len(files)} class files in {args.out}/activations", file=sys.stderr)
    return 0
