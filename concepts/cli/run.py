"""``concepts run CONFIG.yaml [overrides]``: the whole pipeline for every selected class."""
from __future__ import annotations

import argparse
import sys
from typing import Any

# flag -> (dotted config key, argparse type, help)
FLAGS: dict[str, tuple[str, Any, str]] = {
    "--out": ("out", str, "run folder (RUN)"),
    "--images": ("data.images", str, "image folder: IMAGES/<class>/*.jpg"),
    "--classes": ("data.classes", str, "comma-separated class ids (default: every class folder)"),
    "--max-images": ("data.max_images", int, "images per class"),
    "--labels": ("data.labels", str, "file mapping class folders to logit indices"),
    "--model": ("model.name", str, "timm model name (default: bundled EfficientNet-Lite0)"),
    "--checkpoint": ("model.checkpoint", str, "weights file for the model"),
    "--layer": ("model.layer", str, "module where the model is cut (default: last feature map)"),
    "--device": ("model.device", str, "auto, cpu, cuda or cuda:N"),
    "--precision": ("model.precision", str, "fp32, bf16 or fp16"),
    "--mode": ("extract.mode", str, "crops or patches"),
    "--patch-size": ("extract.patch_size", int, "crop size in input pixels"),
    "--batch-size": ("extract.batch_size", int, "images per forward batch"),
    "--method": ("factorize.method", str, "nmf, semi_nmf, pca, ica, kmeans or dictionary"),
    "--concepts": ("factorize.n_concepts", int, "concepts per class"),
    "--seed": ("factorize.seed", int, "random seed of the factorization"),
    "--importance": ("importance.methods", str, "comma-separated: sobol, gradient, occlusion"),
    "--designs": ("importance.designs", int, "Sobol designs"),
    "--executor": ("executor.kind", str, "local or slurm"),
    "--workers": ("executor.workers", str, "local worker processes: auto (one per GPU) or N"),
    "--classes-per-task": ("executor.classes_per_task", int, "classes per task (the model loads once per task)"),
    "--threads": ("executor.threads", int, "torch threads per worker"),
    "--partition": ("executor.partition", str, "Slurm partition"),
    "--gpus-per-task": ("executor.gpus_per_task", int, "GPUs per Slurm task"),
    "--cpus-per-task": ("executor.cpus_per_task", int, "CPUs per Slurm task"),
    "--mem-gb": ("executor.mem_gb", float, "memory per Slurm task (GiB)"),
    "--timeout-min": ("executor.timeout_min", int, "time limit per Slurm task (minutes)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run extract -> factorize -> importance -> atlas -> export for every class",
        description=(
            "Run the whole pipeline from a YAML config (see configs/). Flags and --set override the config; "
            "the resolved config is saved as RUN/config.yaml. Finished classes and stages are skipped, so "
            "rerunning resumes an interrupted run."
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    for flag, (key, kind, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=key.replace(".", "__"), type=kind, default=None,
                            metavar=flag[2:].replace("-", "_").upper(), help=f"{help_text} [{key}]")
    parser.add_argument("--no-atlas", action="store_true", help="skip the atlas [atlas.enabled=false]")
    parser.add_argument("--no-export", action="store_true", help="skip the exports [export.enabled=false]")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set factorize.params.max_iter=300 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="redo every stage, replacing existing files")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=main)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides the flags ask for, as dotted keys (named flags win over --set)."""
    from ..pipeline.config import parse_override

    out: dict[str, Any] = {}
    for text in args.sets:
        key, value = parse_override(text)
        out[key] = value
    for flag, (key, _kind, _help) in FLAGS.items():
        value = getattr(args, key.replace(".", "__"), None)
        if value is None:
            continue
        if key == "executor.workers" and isinstance(value, str) and value.isdigit():
            value = int(value)
        out[key] = value
    if args.no_atlas:
        out["atlas.enabled"] = False
    if args.no_export:
        out["export.enabled"] = False
    return out


def main(args: argparse.Namespace) -> int:
    from ..pipeline import load_config, run_pipeline

    cfg = load_config(args.config, overrides_from_args(args))
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    result = run_pipeline(cfg, overwrite=args.overwrite, progress=not args.quiet)
    if args.quiet:
        print(result.summary())
    return 0
