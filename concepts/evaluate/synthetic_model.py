"""A small CNN for the synthetic data set, registered in timm as ``synth_cnn``.

Four 3x3 conv blocks (64 px input -> 8x8 map of 64 non-negative channels after ReLU),
then global average pooling and a linear layer: ``forward_features`` gives the last conv
map and ``forward_head`` is GAP + linear, so the default split of the toolkit cuts exactly
there and the class logit is linear in concept coefficients.

Training adds an auxiliary loss: a second linear layer on the pooled features predicts which
planted concepts are present (multi-label). Without it the network keeps only what separates
the classes (the key concepts) and its last map is nearly blind to the shared ones, so no
extraction method could recover them; with it, the map represents every planted concept, as a
real network's features represent far more than its task needs. The class logits (``fc``) still
depend only on what separates the classes: the key concepts.

Importing this module registers the architecture, after which
``timm.create_model('synth_cnn', num_classes=5)`` works and a checkpoint written by
``concepts synth`` loads with ``model.load_state_dict(torch.load(path))``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

import timm
from timm.models import register_model
from timm.models._builder import build_model_with_cfg
from timm.models._registry import generate_default_cfgs

from . import synthetic

MODEL_NAME = "synth_cnn"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


class SynthCNN(nn.Module):
    """conv(3->w1, s1) - conv(w1->w2, s2) - conv(w2->w3, s2) - conv(w3->D, s2) - GAP - linear."""

    def __init__(self, num_classes: int = len(synthetic.CLASSES), widths=(24, 48, 64, 64), in_chans: int = 3,
                 drop_rate: float = 0.0, num_aux: int = len(synthetic.CONCEPTS) - 1, **kwargs):
        super().__init__()
        w1, w2, w3, d = widths
        layers = []
        chans = [in_chans, w1, w2, w3, d]
        strides = [1, 2, 2, 2]
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=strides[i], padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.num_features = d
        self.head_hidden_size = d
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.fc = nn.Linear(d, num_classes)
        # Auxiliary concept-presence head, used only in training (see ``train``): it makes the last
        # feature map represent every planted concept, not only the class-defining ones.
        self.aux = nn.Linear(d, num_aux)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        if pre_logits:
            return x
        if self.drop_rate and self.training:
            x = F.dropout(x, self.drop_rate)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


#: the architecture trained for each variant of the data set: ``synth_cnn_subtypes`` is ``synth_cnn`` whose auxiliary
#: head tells the two sub-types of the stripes apart (one output more), so that its last map represents them as a
#: real network represents more than its task needs; its classifier is the same 5-class head
VARIANT_MODELS = {"standard": MODEL_NAME, "subtypes": f"{MODEL_NAME}_subtypes"}
_AUX = {"standard": len(synthetic.CONCEPTS) - 1, "subtypes": len(synthetic.CONCEPTS)}

_CFG = {
    "url": "",
    "num_classes": len(synthetic.CLASSES),
    "input_size": (3, synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE),
    "pool_size": (synthetic.IMAGE_SIZE // 8, synthetic.IMAGE_SIZE // 8),
    "crop_pct": 1.0,
    "interpolation": "bilinear",
    "mean": MEAN,
    "std": STD,
    "first_conv": "features.0",
    "classifier": "fc",
}
default_cfgs = generate_default_cfgs({f"{name}.untrained": dict(_CFG) for name in VARIANT_MODELS.values()})


if MODEL_NAME not in timm.list_models(MODEL_NAME):

    @register_model
    def synth_cnn(pretrained: bool = False, **kwargs) -> SynthCNN:
        """The small CNN of the synthetic benchmark (weights come from ``concepts synth``)."""
        return build_model_with_cfg(SynthCNN, MODEL_NAME, pretrained=False, **kwargs)

    @register_model
    def synth_cnn_subtypes(pretrained: bool = False, **kwargs) -> SynthCNN:
        """``synth_cnn`` trained on the ``subtypes`` variant (its auxiliary head has one output more)."""
        kwargs.setdefault("num_aux", _AUX["subtypes"])
        return build_model_with_cfg(SynthCNN, VARIANT_MODELS["subtypes"], pretrained=False, **kwargs)


def create(num_classes: int = len(synthetic.CLASSES), variant: str = "standard") -> SynthCNN:
    return timm.create_model(VARIANT_MODELS[synthetic.check_variant(variant)], pretrained=False,
                             num_classes=num_classes)


def aux_targets(labels: np.ndarray, subtypes: np.ndarray | None) -> np.ndarray:
    """Which planted concepts each scene holds (N, K) for the auxiliary loss; with sub-types, the stripes column
    stands for the first sub-type and one column more for the second."""
    flat = labels.reshape(len(labels), -1)
    present = (flat[:, :, None] == np.arange(1, len(synthetic.CONCEPTS))).any(axis=1)
    if subtypes is None:
        return present.astype(np.float32)
    kinds = subtypes.reshape(len(subtypes), -1)
    present[:, synthetic.CONCEPT_INDEX["stripes"] - 1] = (kinds == 1).any(axis=1)
    return np.concatenate([present, (kinds == 2).any(axis=1)[:, None]], axis=1).astype(np.float32)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,S,S,3) -> float (N,3,S,S) normalised with mean = std = 0.5."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - 0.5) / 0.5


#: weight of the auxiliary loss per variant (the sub-types need a stronger push to be told apart in the last map)
AUX_WEIGHT = {"standard": 3.0, "subtypes": 8.0}


def train(n_per_class: int = 300, epochs: int = 6, seed: int = 0, batch_size: int = 64, lr: float = 3e-3,
          threads: int | None = None, device=None, progress: bool = True, aux_weight: float | None = None,
          variant: str = "standard") -> tuple[SynthCNN, dict]:
    """Train :class:`SynthCNN` on freshly generated scenes (data seed ``seed + 1000``, disjoint from the
    explanation images written with ``seed``) and report held-out accuracy on another fresh set. The caller's
    torch thread count and global random state are left as they were."""
    from ..runtime import thread_limit

    with thread_limit(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        aux = AUX_WEIGHT[synthetic.check_variant(variant)] if aux_weight is None else aux_weight
        return _train(n_per_class, epochs, seed, batch_size, lr, device, progress, aux, variant)


def _train(n_per_class, epochs, seed, batch_size, lr, device, progress, aux_weight,
           variant="standard") -> tuple[SynthCNN, dict]:
    from tqdm.auto import tqdm

    from ..runtime import pick_device

    device = pick_device(device)
    t0 = time.perf_counter()
    scenes = list(synthetic.generate(n_per_class, seed=seed + 1000, variant=variant))
    images, labels = np.stack([s.image for s in scenes]), np.stack([s.labels for s in scenes])
    classes = np.array([s.class_index for s in scenes], dtype=np.int64)
    subtypes = np.stack([s.subtypes for s in scenes]) if variant == "subtypes" else None
    x_all, y_all = to_tensor(images), torch.from_numpy(classes)
    z_all = torch.from_numpy(aux_targets(labels, subtypes))
    model = create(variant=variant).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(x_all) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="training synth_cnn", disable=not progress)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb, zb = x_all[idx].to(device), y_all[idx].to(device), z_all[idx].to(device)
            if torch.rand((), generator=gen) < 0.5:  # flips keep every concept's identity
                xb = xb.flip(3)
            pooled = model.forward_head(model.forward_features(xb), pre_logits=True)
            out = model.fc(pooled)
            loss = F.cross_entropy(out, yb) + aux_weight * F.binary_cross_entropy_with_logits(model.aux(pooled), zb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(idx)
            correct += int((out.argmax(1) == yb).sum())
            loss_sum += loss.item() * len(idx)
            bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
    bar.close()
    model.eval()
    test_images, _, test_classes = synthetic.generate_arrays(60, seed=seed + 2000, variant=variant)
    acc = accuracy(model, test_images, test_classes, device=device)
    info = {"train_images": int(len(x_all)), "epochs": epochs, "batch_size": batch_size, "aux_weight": aux_weight,
            "variant": variant, "test_accuracy": acc,
            "train_seconds": round(time.perf_counter() - t0, 1), "seed": seed}
    return model, info


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, classes: np.ndarray, device=None, batch_size: int = 256) -> float:
    model.eval()
    device = device or next(model.parameters()).device
    hits = 0
    for i in range(0, len(images), batch_size):
        out = model(to_tensor(images[i:i + batch_size]).to(device))
        hits += int((out.argmax(1).cpu().numpy() == classes[i:i + batch_size]).sum())
    return hits / len(images)


def save(model: nn.Module, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path


def load(path: str | Path, device=None, variant: str = "standard") -> SynthCNN:
    model = create(variant=variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def make_synthetic(out: str | Path, *, n_per_class: int = 40, n_train_per_class: int = 300, epochs: int = 6,
                   seed: int = 0, threads: int | None = None, device=None, progress: bool = True,
                   variant: str = "standard", batch_size: int = 64) -> dict:
    """Write the synthetic data set and train its CNN (the ``concepts synth`` command).

    ``out/images/<class>/*.png`` (the images to explain, seed ``seed``), ``out/masks/...npz``,
    ``out/synthetic.json`` (concepts, class definitions, training report), ``out/labels.csv``
    (folder -> logit index, for ``concepts extract --labels``), ``out/samples.png`` (scenes next to their
    label maps) and ``out/synth_cnn.pt`` (weights). ``variant='subtypes'``: the stripes come as two sub-types,
    labelled in the masks, and the model is ``synth_cnn_subtypes`` (see :data:`VARIANT_MODELS`).
    """
    import json

    out = Path(out)
    synthetic.write_dataset(out, n_per_class, seed=seed, progress=progress, variant=variant)
    synthetic.sample_sheet(out / "samples.png", seed=seed)
    with open(out / "labels.csv", "w") as handle:
        handle.write("folder,index\n")
        for i, folder in enumerate(synthetic.class_names()):
            handle.write(f"{folder},{i}\n")
    model, info = train(n_per_class=n_train_per_class, epochs=epochs, seed=seed, threads=threads, device=device,
                        progress=progress, variant=variant, batch_size=batch_size)
    weights = save(model, out / "synth_cnn.pt")
    images, _, classes = synthetic.generate_arrays(n_per_class, seed=seed, variant=variant)
    info["explained_images_accuracy"] = accuracy(model, images, classes)
    meta = json.loads((out / synthetic.DEFINITION_FILE).read_text())
    meta["model"] = {"name": VARIANT_MODELS[variant], "weights": weights.name, **info}
    (out / synthetic.DEFINITION_FILE).write_text(json.dumps(meta, indent=2))
    return meta
