"""Evaluate the class score of concept-masked reconstructions, in bounded chunks.

For image ``i`` and a mask ``m`` in ``[0, 1]^r`` the edited activations are
``Ã = (U_i ⊙ m) W (+ R_i)``: the same mask value at every position, ``R_i = A_i - U_i W`` the
optional residual.  :class:`ConceptScorer` holds ``U``, ``W``, the head and the class index and
returns the class logit (or probability) for many ``(image, mask)`` pairs, building at most
``batch_size`` activation tensors at a time on the device.  With a linear head
(``h(a) = mean_p a_p @ weight.T + bias``) it skips the head entirely: the logits are
``(m ⊙ ū_i) (W weightᵀ) + mean_p R_i weightᵀ + bias`` with ``ū_i = mean_p U_i``.

The general path builds ``Ã`` channel-first, ``(B, D, N)`` contiguous, and hands the head its
``(B, N, D)`` transpose: a feature-map head that permutes back to NCHW then needs no copy.  When the
head is a :class:`~concepts.models.ModelSplit` method whose model ends in a linear classifier, only
the class's row of that classifier is evaluated (checked numerically against the full head).

For the default cut of a ViT the head is evaluated in factored form (:meth:`ModelSplit.factored_head`: the
masked tokens are never built), checked against the dense path on a few masks first. The head runs under the
model's autocast ``precision``; ``memo=True`` evaluates each distinct (image, mask) pair once over the scorer's
life (the fidelity metrics share many); ``on_rows(k)`` is called after every batch of ``k`` evaluations.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConceptsError
from ..runtime import autocast_dtype, pick_device, thread_limit, threads_for

Head = Callable[..., torch.Tensor]
_DENSE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("concepts_dense_only", default=False)


@contextlib.contextmanager
def dense_only():
    """Within the block, scorers evaluate the head on dense activations only (no factored ViT head): the
    reference path that the tests and ``benchmarks/importance.py`` compare the fast one with."""
    token = _DENSE_ONLY.set(True)
    try:
        yield
    finally:
        _DENSE_ONLY.reset(token)


def _as_tensor(x, device, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _check_shapes(U: torch.Tensor, W: torch.Tensor, head, linear_head, score: str) -> None:
    """One-line errors for coefficients, bank, head and score that do not fit together."""
    if U.ndim != 3:
        raise ConceptsError(f"coefficients must be (n_images, positions, r); got shape {tuple(U.shape)}")
    if W.ndim != 2 or W.shape[0] != U.shape[2]:
        raise ConceptsError(f"components must be (r, D) with r = {U.shape[2]}; got shape {tuple(W.shape)}")
    if head is None and linear_head is None:
        raise ConceptsError("give a head callable or a linear head (weight, bias)")
    if score not in ("logit", "probability"):
        raise ConceptsError(f"unknown score {score!r}; choose logit or probability")


class ConceptScorer:
    """Class score of ``h((U ⊙ M) W + R)`` for batches of masks.

    Parameters
    ----------
    coefficients : (n_images, N, r) concept coefficients U at every position of every image.
    components : (r, D) concept bank W.
    head : callable ``head(positions (B, N, D)[, prefix (B, P, D)]) -> logits (B, C)``.
    class_index : the logit to read.
    linear_head : optional ``(weight (C, D), bias (C,))`` with ``head(a) == a.mean(1) @ weight.T + bias``.
    residual : optional (n_images, N, D), added back to every reconstruction.
    prefix : optional (n_images, P, D) tokens passed to ``head`` (transformers).
    score : ``"logit"`` or ``"probability"`` (softmax over all classes).
    """

    def __init__(
        self,
        coefficients,
        components,
        head: Head | None,
        class_index: int,
        *,
        linear_head=None,
        residual=None,
        prefix=None,
        score: str = "logit",
        batch_size: int = 128,
        device=None,
        precision: str | None = None,
        memo: bool = False,
        factored: bool = True,
    ):
        self.device = pick_device(device)
        self.autocast = autocast_dtype(precision)
        self.on_rows: Callable[[int], None] | None = None  # called with the rows of every evaluated batch
        self.evaluations = 0  # head evaluations made (general path)
        self._memo: dict | None = {} if memo else None
        self._use_factored = bool(factored)
        self.U = _as_tensor(coefficients, self.device)
        self.W = _as_tensor(components, self.device)
        _check_shapes(self.U, self.W, head, linear_head, score)
        self.head = head
        self.class_index = int(class_index)
        self.score = score
        self.batch_size = max(1, int(batch_size))
        self._Wt = self.W.T.contiguous()  # (D, r)
        self._res = None  # (n, N, D) as given; a channel-first copy is made only for the general path
        self._resT_cache = None
        if residual is not None:
            self._res = _as_tensor(residual, self.device)
            if self._res.shape != (*self.U.shape[:2], self.W.shape[1]):
                raise ConceptsError(
                    f"residual must be (n_images, N, D) = {(*self.U.shape[:2], self.W.shape[1])}; "
                    f"got {tuple(self._res.shape)}"
                )
        self.prefix = None if prefix is None else _as_tensor(prefix, self.device)
        self.linear = None
        if linear_head is not None:
            self._set_linear(*linear_head)

    def _set_linear(self, weight, bias) -> None:
        """What the linear head needs, per image: ū_i (n, r), the concept-to-class table W w_cᵀ (r,) and the
        offset b_c + mean_p R_i · w_c (n,); all classes only for probabilities."""
        weight = _as_tensor(weight, self.device)
        bias = _as_tensor(bias, self.device)
        if weight.shape[1] != self.W.shape[1]:
            raise ConceptsError(f"linear head weight is {tuple(weight.shape)}; expected (C, {self.W.shape[1]})")
        self.linear = (weight, bias)
        self._ubar = self.U.mean(dim=1)
        probability = self.score == "probability"
        rows = weight if probability else weight[self.class_index : self.class_index + 1]
        cols = slice(None) if probability else slice(self.class_index, self.class_index + 1)
        self._wproj = self.W @ rows.T  # (r, C or 1)
        offset = bias[cols][None].expand(self.U.shape[0], -1)
        if self._res is not None:
            offset = offset + self._res.mean(dim=1) @ rows.T
        self._offset = offset  # (n, C or 1)
        self._col = self.class_index if probability else 0

    @property
    def residual(self) -> torch.Tensor | None:
        """The residual, (n_images, N, D)."""
        return self._res

    @property
    def _resT(self) -> torch.Tensor | None:
        """The residual channel-first, (n_images, D, N) contiguous (made on first use)."""
        if self._res is not None and self._resT_cache is None:
            self._resT_cache = self._res.transpose(1, 2).contiguous()
            self._res = self._resT_cache.transpose(1, 2)  # keep one copy only
        return self._resT_cache

    @property
    def n_images(self) -> int:
        return int(self.U.shape[0])

    @property
    def n_concepts(self) -> int:
        return int(self.U.shape[2])

    @property
    def exact(self) -> bool:
        """True when the linear head shortcut is used (no call to ``head``)."""
        return self.linear is not None

    def concept_logits(self) -> torch.Tensor:
        """With a linear head: the per-image contribution s_ik of concept k to the class logit, (n, r)."""
        if self.linear is None:
            raise ConceptsError("concept_logits needs a linear head")
        return self._ubar * self._wproj[:, self._col][None]

    # ------------------------------------------------------------------ core
    def _read(self, logits: torch.Tensor, sliced: bool = False) -> torch.Tensor:
        if sliced:
            return logits[:, 0]
        if self.score == "probability":
            return torch.softmax(logits.float(), dim=-1)[:, self.class_index]
        return logits[:, self.class_index]

    def reconstruct(self, images: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """Edited positions ``(U_i ⊙ m) W + R_i`` for paired images (B,) and masks (B, r) -> (B, N, D).

        The result is the transpose of a channel-first ``(B, D, N)`` contiguous tensor.
        """
        u = self.U[images]
        if masks is not None:
            u = u * masks[:, None, :]
        out = torch.matmul(self._Wt, u.transpose(1, 2))  # (B, D, N)
        if self._resT is not None:
            # add each image's residual by broadcasting over its run of rows (no (B, D, N) gather)
            values, counts = torch.unique_consecutive(images, return_counts=True)
            start = 0
            for value, count in zip(values.tolist(), counts.tolist()):
                out[start : start + count] += self._resT[value]
                start += count
        return out.transpose(1, 2)

    def call_head(self, positions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            weight, bias = self.linear
            return positions.mean(dim=1) @ weight.T + bias
        with self._precision():
            if self.prefix is not None:
                return self.head(positions, self.prefix[images]).float()
            return self.head(positions).float()

    def _precision(self):
        """The model's autocast precision (bf16 / fp16) around head calls; nothing for fp32."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def _factored(self):
        """The factored class-token head of a ViT split (:meth:`ModelSplit.factored_head`), when the head allows
        it and it gives the plain path's fp32 logits on a few masks; else None. Built once. It runs in fp32 whatever
        the model's precision: it costs a few hundredths of a dense evaluation."""
        if hasattr(self, "_factored_head"):
            return self._factored_head
        self._factored_head = None
        split = getattr(self.head, "__self__", None)
        if (not self._use_factored or _DENSE_ONLY.get() or self.prefix is None
                or getattr(self.head, "__name__", "") != "h_positions" or not hasattr(split, "factored_head")):
            return None
        fast = split.factored_head(self.U, self.W, self._res, self.prefix)
        if fast is None:
            return None
        gen = torch.Generator().manual_seed(0)
        img = torch.arange(min(2, self.n_images), device=self.device).repeat_interleave(3)
        masks = torch.rand(len(img), self.n_concepts, generator=gen).to(self.device)
        masks[0] = 1
        with torch.no_grad():
            autocast, self.autocast = self.autocast, None  # checked against the fp32 head; it runs in fp32
            try:
                want = self.call_head(self.reconstruct(img, masks), img)
            finally:
                self.autocast = autocast
            got = fast(img, masks).float()
        if got.shape == want.shape and float((got - want).abs().max()) <= 1e-4 * max(float(want.abs().max()), 1e-6):
            self._factored_head = fast
        return self._factored_head

    def _classifier(self) -> nn.Linear | None:
        """The final linear classifier of a ModelSplit head, when slicing it to the class row is exact."""
        if self.score != "logit" or self.head is None:
            return None
        if hasattr(self, "_sliceable"):
            return self._sliceable
        self._sliceable = None
        model = getattr(getattr(self.head, "__self__", None), "model", None)
        clf = model.get_classifier() if model is not None and hasattr(model, "get_classifier") else None
        if isinstance(clf, nn.Linear) and 0 <= self.class_index < clf.out_features:
            img = torch.arange(min(2, self.n_images), device=self.device)
            with torch.no_grad():
                pos = self.reconstruct(img, None)
                full = self._read(self.call_head(pos, img))
                with self._class_only(clf):
                    part = self.call_head(pos, img)
            if part.shape[-1] == 1 and torch.allclose(part[:, 0], full, rtol=1e-4, atol=1e-4):
                self._sliceable = clf
        return self._sliceable

    @contextlib.contextmanager
    def _class_only(self, clf: nn.Linear | None):
        """Make ``clf`` compute only the class's logit (one output column) while active."""
        if clf is None:
            yield False
            return
        c = self.class_index
        weight = clf.weight[c : c + 1]
        bias = None if clf.bias is None else clf.bias[c : c + 1]
        clf.forward = lambda x: F.linear(x, weight, bias)
        try:
            yield True
        finally:
            del clf.forward

    @torch.no_grad()
    def scores(self, images, masks, progress: bool = False, desc: str = "perturbations") -> np.ndarray:
        """Class score for each pair ``(images[j], masks[j])``; ``masks`` (M, r) in [0, 1]."""
        images = torch.as_tensor(np.asarray(images), dtype=torch.long, device=self.device)
        masks = _as_tensor(masks, self.device)
        if masks.ndim != 2 or masks.shape[1] != self.n_concepts or masks.shape[0] != images.shape[0]:
            raise ConceptsError(f"masks must be ({images.shape[0]}, {self.n_concepts}); got {tuple(masks.shape)}")
        if self.linear is not None:
            out = []
            for start in range(0, len(images), 65536):
                img, m = images[start : start + 65536], masks[start : start + 65536]
                z = m * self._ubar[img]
                if self.score == "probability":
                    out.append(self._read(z @ self._wproj + self._offset[img]))
                else:
                    out.append(z @ self._wproj[:, 0] + self._offset[img, 0])
            return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)
        if self._memo is not None:
            return self._memo_scores(images, masks, progress, desc)
        return self._evaluate(images, masks, progress, desc)

    def _evaluate(self, images: torch.Tensor, masks: torch.Tensor, progress: bool = False,
                  desc: str = "perturbations") -> np.ndarray:
        """The general path: ``batch_size`` masked activations at a time through the head (or its factored form)."""
        out = []
        starts = range(0, len(images), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, leave=False, unit="batch")
        with self._class_only(self._classifier()) as sliced:
            fast = self._factored()
            # the factored head is a loop of small kernels: one thread (runtime.threads_for); the dense head's
            # forward passes keep the caller's threads
            one = fast is not None and self.device.type == "cpu"
            work = float(self.batch_size) * self.U.shape[1] * self.n_concepts * (self.n_concepts + 16)  # per batch
            with thread_limit(threads_for(work)) if one else contextlib.nullcontext():
                for start in starts:
                    img = images[start : start + self.batch_size]
                    m = masks[start : start + self.batch_size]
                    logits = fast(img, m) if fast is not None else self.call_head(self.reconstruct(img, m), img)
                    out.append(self._read(logits.float(), sliced).double())
                    self.evaluations += len(img)
                    if self.on_rows is not None:
                        self.on_rows(len(img))
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)

    def _memo_scores(self, images: torch.Tensor, masks: torch.Tensor, progress: bool, desc: str) -> np.ndarray:
        """Scores with every (image, mask) pair evaluated once over the scorer's life (fidelity metrics share
        masks: the full and empty masks, the same random subsets for every method, equal rankings)."""
        img_np = images.cpu().numpy()
        mask_np = np.ascontiguousarray(masks.cpu().numpy())
        keys = [(int(i), row.tobytes()) for i, row in zip(img_np, mask_np)]
        todo, seen = [], set()
        for j, key in enumerate(keys):
            if key not in self._memo and key not in seen:
                seen.add(key)
                todo.append(j)
        if todo:
            pick = torch.as_tensor(np.asarray(todo), device=self.device)
            values = self._evaluate(images[pick], masks[pick], progress, desc)
            for j, value in zip(todo, values.tolist()):
                self._memo[keys[j]] = value
        return np.asarray([self._memo[key] for key in keys], dtype=np.float64)

    def full_scores(self) -> np.ndarray:
        """Score of every image with all concepts kept (mask of ones)."""
        n = self.n_images
        return self.scores(np.arange(n), np.ones((n, self.n_concepts), dtype=np.float32))

    def gradient_input(self, progress: bool = False) -> np.ndarray:
        """Gradient x input of the class score w.r.t. U at every position: (n, N, r).

        Exact with a linear head (logit score): ``U_pk (W_k · w_c) / N``.
        """
        if self.linear is not None and self.score == "logit":
            wc = self._wproj[:, self._col]  # (r,)
            return (self.U * wc[None, None] / self.U.shape[1]).double().cpu().numpy()
        chunk = max(1, self.batch_size // 4)
        out = []
        starts: Iterable[int] = range(0, self.n_images, chunk)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="gradient x input", leave=False, unit="batch")
        with self._class_only(self._classifier()) as sliced:
            for start in starts:
                img = torch.arange(start, min(start + chunk, self.n_images), device=self.device)
                with torch.enable_grad():
                    u = self.U[img].clone().requires_grad_(True)
                    pos = u @ self.W
                    if self._res is not None:
                        pos = pos + self._res[img]
                    score = self._read(self.call_head(pos, img), sliced)
                    (grad,) = torch.autograd.grad(score.sum(), u)
                out.append((grad * u).detach().double())
                if self.on_rows is not None:
                    self.on_rows(len(img))
        return torch.cat(out).cpu().numpy()


class MaskRecorder:
    """Stands in for a :class:`ConceptScorer` to collect the (image, mask) pairs a metric asks for (it answers
    zeros); :meth:`pairs` gives them, each once, for one batched evaluation."""

    def __init__(self, n_images: int, n_concepts: int):
        self.n_images, self.n_concepts = int(n_images), int(n_concepts)
        self._seen: dict[tuple[int, bytes], None] = {}
        self._rows: list[tuple[int, np.ndarray]] = []

    def scores(self, images, masks, progress: bool = False, desc: str = "") -> np.ndarray:
        images = np.asarray(images)
        masks = np.ascontiguousarray(np.asarray(masks, dtype=np.float32))
        for i, row in zip(images.tolist(), masks):
            key = (int(i), row.tobytes())
            if key not in self._seen:
                self._seen[key] = None
                self._rows.append((int(i), row))
        return np.zeros(len(images))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct pairs, ordered by image (runs of one image batch best)."""
        order = sorted(range(len(self._rows)), key=lambda j: self._rows[j][0])
        images = np.asarray([self._rows[j][0] for j in order], dtype=np.int64)
        masks = np.stack([self._rows[j][1] for j in order]) if order else np.zeros((0, self.n_concepts), np.float32)
        return images, masks


def images_and_masks(n_images: int, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair every image with every row of ``design``: (n * M,) image indices and (n * M, r) masks."""
    m = len(design)
    return np.repeat(np.arange(n_images), m), np.tile(design, (n_images, 1))
