"""MACO feature visualisation (Fel et al. 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization"), vectorised over targets.

For every target (a concept direction or a class logit) an image of side ``image_size`` is made from a phase
spectrum under a fixed natural magnitude spectrum (:mod:`concepts.fviz.parametrization`); only the phases are
optimised (NAdam). Each step draws, for every image, ``crops`` random square crops of side ``crop_min`` to
``crop_max`` of the image, resamples them to the model's input size, adds Gaussian noise of std ``noise`` (in
[0, 1] pixel units), and ascends the mean score of its target over its crops (:mod:`concepts.fviz.objectives`).
The crops of ``batch`` images go through the model in one forward pass. The transparency map of an image is the
sum over steps of ``|dL/dx|`` (summed over colours), normalised to a maximum of 1: where the objective looked.
The finished (periodic) image is rolled so that the peak of its smoothed transparency map is at the centre.

Every image has its own random generator, seeded from ``seed`` and its target's name, for its initial phase, its
crops and its noise: an image does not depend on the other images of its batch (up to float rounding of batched
convolutions), and the same seed gives the same images.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from .crops import crop, grid_boxes, random_boxes
from .objectives import Objective, Target, pooled
from .parametrization import FourierImages
from .spectrum import Spectrum


@dataclass
class MacoResult:
    """The visualisations of ``targets``, in order."""

    targets: list[Target]
    images: np.ndarray  # (K, N, N, 3) uint8
    transparency: np.ndarray  # (K, N, N) float32 in [0, 1]
    curve: np.ndarray  # (K, steps) float32: mean score over the step's crops
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def float_images(self) -> np.ndarray:
        """(K, 3, N, N) float32 in [0, 1]."""
        return self.images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def target_seed(seed: int, target: Target, key: str = "") -> int:
    """The seed of one image: from the seed, a key (the class id in the stage) and the target's name (stable across
    batches and processes)."""
    digest = hashlib.sha256(f"{int(seed)}:{key}:{target.name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def input_gradients_only(module: torch.nn.Module) -> Iterator[None]:
    """Turn off the parameters' gradients for the block (only the input's are needed) and restore them after."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Maco:
    """MACO visualisations of many targets at once.

    Parameters are stored as given (scikit-learn style); :meth:`visualize` runs the optimisation.
    """

    def __init__(self, *, steps: int = 256, lr: float = 1.0, crops: int = 6, crop_min: float = 0.25,
                 crop_max: float = 0.3, noise: float = 0.02, image_size: int = 512, seed: int = 0, batch: int = 16,
                 power: float = 2.0, floor: float = 0.1):
        self.steps = steps
        self.lr = lr
        self.crops = crops
        self.crop_min = crop_min
        self.crop_max = crop_max
        self.noise = noise
        self.image_size = image_size
        self.seed = seed
        self.batch = batch
        self.power = power
        self.floor = floor

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in ("steps", "lr", "crops", "crop_min", "crop_max", "noise",
                                                       "image_size", "seed", "batch", "power", "floor")}

    @property
    def eval_scale(self) -> float:
        """Side of the crops the finished images are evaluated on: the middle of the crop range."""
        return 0.5 * (self.crop_min + self.crop_max)

    def objective(self, split, targets: Sequence[Target], directions, preprocessing) -> Objective:
        return Objective(split, targets, directions, mean=preprocessing.mean, std=preprocessing.std,
                         power=self.power, floor=self.floor)

    def visualize(self, split, targets: Sequence[Target], directions: np.ndarray | torch.Tensor | None,
                  spectrum: Spectrum, preprocessing, *, key: str = "", progress=None) -> MacoResult:
        """Optimise one image per target. ``split``: the model cut (:class:`~concepts.models.ModelSplit`);
        ``directions``: (r, D) the atoms the concept targets index; ``spectrum``: the fixed magnitude (resized to
        ``image_size``); ``preprocessing``: the model's input normalisation and size; ``key``: mixed into every
        image's seed (the stage passes the class id, so that classes do not share their random draws).
        ``progress``: a callable given the number of steps done per batch."""
        targets = list(targets)
        start = time.perf_counter()
        spectrum = spectrum.resized(int(self.image_size))
        objective = self.objective(split, targets, directions, preprocessing)
        size = int(preprocessing.input_size)
        images, alphas, curves = [], [], []
        batch = max(1, int(self.batch))
        with input_gradients_only(split):
            for first in range(0, len(targets), batch):
                chunk = list(range(first, min(first + batch, len(targets))))
                img, alpha, curve = self._optimise(objective, chunk, spectrum, size, key, progress)
                images.append(img)
                alphas.append(alpha)
                curves.append(curve)
        images_u8 = np.concatenate(images) if images else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return MacoResult(targets=targets, images=images_u8,
                          transparency=np.concatenate(alphas) if alphas else np.zeros((0,) + images_u8.shape[1:3],
                                                                                      np.float32),
                          curve=np.concatenate(curves) if curves else np.zeros((0, self.steps), np.float32),
                          seconds=time.perf_counter() - start, settings=self.get_params())

    def _generators(self, targets: Sequence[Target], device: torch.device, key: str) -> list[torch.Generator]:
        gens = []
        for target in targets:
            g = torch.Generator(device=device)
            g.manual_seed(target_seed(self.seed, target, key))
            gens.append(g)
        return gens

    def _optimise(self, objective: Objective, chunk: list[int], spectrum: Spectrum, size: int, key: str, progress):
        device = objective.split.device
        targets = [objective.targets[i] for i in chunk]
        generators = self._generators(targets, device, key)
        k, c, n = len(chunk), int(self.crops), int(self.image_size)
        phase = FourierImages.random_phase(k, n, generators, device)
        param = FourierImages(spectrum, phase)
        optimizer = torch.optim.NAdam([param.phase], lr=float(self.lr))
        owner = torch.tensor(chunk, device=device).repeat_interleave(c)
        alpha = torch.zeros(k, n, n, device=device)
        curve = torch.zeros(k, int(self.steps), device=device)
        for step in range(int(self.steps)):
            optimizer.zero_grad(set_to_none=True)
            x = param()
            x.retain_grad()
            boxes = random_boxes(generators, c, float(self.crop_min), float(self.crop_max), device)
            crops = crop(x, boxes, size)
            if self.noise > 0:
                noise = torch.cat([torch.randn((c, 3, size, size), generator=g, device=device) for g in generators])
                crops = crops + float(self.noise) * noise
            scores = objective(crops, owner).view(k, c).mean(dim=1)
            (-scores.sum()).backward()
            alpha += x.grad.detach().abs().sum(dim=1)
            optimizer.step()
            curve[:, step] = scores.detach()
            if progress is not None:
                progress(1)
        with torch.no_grad():
            final, alpha = centre_on_attention(param(), alpha, 0.25 * self.eval_scale * n)
        peak = alpha.flatten(1).max(dim=1).values.clamp(min=1e-20)
        alpha = alpha / peak[:, None, None]
        images = (final.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8)
        return images.cpu().numpy(), alpha.cpu().numpy().astype(np.float32), curve.cpu().numpy()


def centre_on_attention(images: torch.Tensor, alpha: torch.Tensor, sigma: float):
    """Roll each periodic image (and its transparency map) so that the region its objective looked at most (the
    peak of the map blurred by a Gaussian of std ``sigma`` pixels, on the torus) is at the centre. The image is
    the same texture (rolling a periodic image changes the phase by a linear term only: same magnitude); it is
    shown centred on its main instance of the concept."""
    k, n = alpha.shape[0], alpha.shape[-1]
    freq = torch.fft.fftfreq(n, device=alpha.device)
    gauss = torch.exp(-2 * (torch.pi * sigma) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    blurred = torch.fft.ifft2(torch.fft.fft2(alpha) * gauss).real
    peaks = blurred.flatten(1).argmax(dim=1)
    out_images, out_alpha = [], []
    for i in range(k):
        dy, dx = divmod(int(peaks[i]), n)
        shift = (n // 2 - dy, n // 2 - dx)
        out_images.append(torch.roll(images[i], shift, dims=(-2, -1)))
        out_alpha.append(torch.roll(alpha[i], shift, dims=(-2, -1)))
    return torch.stack(out_images), torch.stack(out_alpha)


@dataclass
class Evaluation:
    """The finished images measured on a fixed grid of crops (no noise): what the artefact records."""

    pooled: np.ndarray  # (K, D) mean pooled activation over the grid's crops
    score: np.ndarray  # (K,) each image's objective for its own target (mean over the crops)
    logit: np.ndarray | None  # (K,) the class logit (mean over the crops), when a class index is given
    scale: float = 0.0
    n_crops: int = 0


@torch.no_grad()
def evaluate(objective: Objective, images: np.ndarray | torch.Tensor, scale: float, size: int,
             class_index: int | None = None, batch: int = 32) -> Evaluation:
    """Measure images (K, 3, N, N) in [0, 1] (or (K, N, N, 3) uint8) for their targets on a grid of crops of side
    ``scale``: the mean pooled activation, the objective and the class logit."""
    split = objective.split
    device = split.device
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2).float() / 255.0
    images = images.to(device, torch.float32)
    k = len(images)
    boxes = grid_boxes(scale, 1, device)
    m = boxes.shape[1]
    pooled_out, scores, logits = [], [], []
    per = max(1, batch // m)
    for first in range(0, k, per):
        part = images[first:first + per]
        crops = crop(part, boxes.expand(len(part), -1, -1), size)
        acts = objective.activations(crops)
        owner = torch.arange(first, first + len(part), device=device).repeat_interleave(m)
        scores.append(objective.score_activations(acts, owner).view(len(part), m).mean(dim=1))
        pooled_out.append(pooled(split, acts).float().view(len(part), m, -1).mean(dim=1))
        if class_index is not None:
            logits.append(split.h(acts)[:, int(class_index)].float().view(len(part), m).mean(dim=1))
    return Evaluation(pooled=torch.cat(pooled_out).cpu().numpy(), score=torch.cat(scores).cpu().numpy(),
                      logit=torch.cat(logits).cpu().numpy() if logits else None, scale=float(scale), n_crops=m)
