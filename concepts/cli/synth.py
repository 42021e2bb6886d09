"""``concepts synth --out DIR``: the synthetic ground-truth data set and its small CNN."""
from __future__ import annotations

import argparse

from .common import add_device


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write the synthetic data set (images, per-pixel concept masks) and train its small CNN",
        description="Write DIR/images/<class>/*.png, DIR/masks/<class>/*.npz (per-pixel concept labels), "
        "DIR/synthetic.json (concepts and class definitions), DIR/labels.csv and train the CNN 'synth_cnn' "
        "(a few minutes on 2 CPU cores), saved as DIR/synth_cnn.pt. Then: concepts extract DIR/images --out RUN "
        "--model synth_cnn --checkpoint DIR/synth_cnn.pt --labels DIR/labels.csv --mode patches",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--images-per-class", type=int, default=40, help="images to explain per class (default 40)")
    parser.add_argument("--train-per-class", type=int, default=300,
                        help="training scenes per class, generated on the fly (default 300)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and of the training")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for training")
    parser.add_argument("--variant", default="standard", choices=["standard", "subtypes"],
                        help="subtypes: the stripes of class zebra come as two sub-types, at 0 and 90 degrees, "
                             "labelled per pixel in the masks (a test of recursive sub-concepts)")
    add_device(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConceptsError
    from ..evaluate.synthetic_model import make_synthetic

    if args.images_per_class < 1 or args.train_per_class < 1 or args.epochs < 1:
        raise ConceptsError("--images-per-class, --train-per-class and --epochs must be >= 1")
    meta = make_synthetic(args.out, n_per_class=args.images_per_class, n_train_per_class=args.train_per_class,
                          epochs=args.epochs, seed=args.seed, threads=args.threads, device=args.device,
                          progress=not args.quiet, variant=args.variant)
    m = meta["model"]
    print(f"synth: {len(meta['classes'])} classes x {args.images_per_class} images in {args.out}/images; "
          f"{m['name']} test accuracy {m['test_accuracy']:.3f} ({m['train_seconds']} s); weights {args.out}/{m['weights']}")
    return 0
