"""The shared machinery of the sparse autoencoders: parameters, training loop, inference, persistence.

Model (DESIGN §8): codes ``z = σ(W_e (a − b) + b_e)`` (n x K, sparse, >= 0), reconstruction ``â = z D + b``, atoms
``D_k`` (``components_``) of unit norm.  The activation σ is the family's: ReLU (+ L1), TopK, BatchTopK, JumpReLU;
Matryoshka sums the losses of nested prefixes of the dictionary; the archetypal relaxation (RA-SAE) builds ``D``
from data points.

Training (one loop for every family, on CPU or CUDA):

* data are rescaled internally by one factor ``c`` (``scale_``) so that the centred rows have mean squared norm D
  (the number of channels): the same learning rate, bandwidth and penalties then fit any layer.  Fitted attributes
  are in the data's units;
* ``b`` starts at the geometric median (or mean) of a sample of rows, ``D`` at random unit atoms, ``W_e = D``;
* Adam (fused), learning rate warmed up linearly over ``warmup_steps`` and decayed (linearly or cosine) over the last
  ``1 - decay_start`` of the steps;
* unit-norm atoms: the gradient's component along each atom is removed before the step and the atoms are
  renormalised after it;
* dead latents (no activation over the last ``dead_rows`` rows): an auxiliary TopK loss (AuxK, Gao et al. 2024) that
  reconstructs the residual with the dead latents, or resampling of their atoms on badly reconstructed rows;
* the codes are sparse all along (:mod:`._sparse`): one dense product per step for the pre-activations, the rest
  O(nnz D) — on two CPU cores several times faster than the dense autograd step of peers.

``fit`` takes an array / tensor (n x D), or a :class:`~concepts.factorize.stream.RowStream` over activation caches
(which never holds the whole cache in memory).  ``partial_fit`` makes steps on one chunk of rows.  The same seed
gives identical results on the CPU.  ``transform`` returns the dense codes (n x K); :meth:`encode_sparse` a SciPy
CSR matrix.  ``state_arrays`` / ``load_state`` save and restore a fitted model exactly.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from numbers import Integral, Real

from ...errors import ConceptsError
from .._checks import as_tensor, check_fitted, output, validate_params, InputError
from ..base import DictionaryEstimator, make_generator
from ..stream import RowStream
from ._sparse import Codes, decode, gather_pre

_EPS = 1e-12
#: internal parameters indexed by latent along axis 0 (permuted when the latents are renumbered)
_PER_LATENT = ("W_e", "b_e", "D", "log_theta", "Wmix", "Lam")


def geometric_median(X: torch.Tensor, n_iter: int = 30, tol: float = 1e-5) -> torch.Tensor:
    """Weiszfeld's iterations from the mean."""
    Y = X.float()
    m = Y.double().mean(0).float()
    for _ in range(n_iter):
        dist = torch.linalg.vector_norm(Y - m, dim=1).clamp_min(1e-12)
        w = 1.0 / dist
        new = (w @ Y) / w.sum()
        if float(torch.linalg.vector_norm(new - m)) <= tol * (float(torch.linalg.vector_norm(m)) + 1e-12):
            m = new
            break
        m = new
    return m.to(X.dtype)


class _Trainer:
    """Training state: internal (rescaled) parameters, optimiser, step counter, dead-latent tracker."""

    def __init__(self, params: dict[str, torch.Tensor], scale: float, gen: torch.Generator, device, lr: float,
                 frozen=(), lr_scales: dict | None = None):
        self.params = params
        self.scale = float(scale)
        self.gen = gen
        self.device = device
        lr_scales = lr_scales or {}
        groups: dict[float, list] = {}
        for name, p in params.items():
            p.requires_grad_(name not in frozen)
            if name not in frozen:
                groups.setdefault(float(lr_scales.get(name, 1.0)), []).append(p)
        param_groups = [{"params": ps, "lr": lr * f, "lr_scale": f} for f, ps in groups.items()]
        try:
            self.opt = torch.optim.Adam(param_groups, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.Adam(param_groups, lr=lr)
        K = params["W_e"].shape[0]
        self.step = 0
        self.rows = 0
        self.last_fired = torch.zeros(K, dtype=torch.long, device=device)  # rows seen when it last fired
        self.extra: dict = {}


class SparseAutoencoder(DictionaryEstimator):
    """Base class of the sparse autoencoders (not registered itself).

    Subclasses define the activation: ``_select`` (which entries of the pre-activations are active in training),
    ``_activate`` (their values, differentiable), ``_penalty``, ``_infer`` (the inference rule, in data units),
    and may override ``_recon_loss``, ``_dictionary``, ``_init_params``, ``_project``, ``_export``/``_import``.
    """

    method = "sae"
    #: SAEs take signed activations (ViT tokens, residual streams) as well as non-negative ones
    nonnegative_input = False
    overcomplete = True  # more atoms than rows or channels is a valid dictionary
    #: fitted arrays saved with the bank, besides components_ (extended by subclasses)
    _state = ("encoder_weight_", "encoder_bias_", "decoder_bias_", "scale_")
    #: whether atoms are kept at unit norm (RA-SAE atoms live near the data's hull instead)
    _unit_atoms = True
    #: parameters the loop never updates
    _frozen: tuple[str, ...] = ()
    #: number the latents by decreasing code mass after fit (Matryoshka keeps its nested order)
    _reorder = True

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left"), None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "min_steps": [Interval(Integral, 0, None, closed="left")],
        "warmup_steps": [Interval(Integral, 0, None, closed="left"), None],
        "lr_decay": [StrOptions({"constant", "linear", "cosine"})],
        "decay_start": [Interval(Real, 0, 1, closed="both")],
        "dead_latents": [StrOptions({"auxk", "resample", "none"})],
        "aux_k": [Interval(Integral, 1, None, closed="left"), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "dead_rows": [Interval(Integral, 1, None, closed="left")],
        "decoder_bias_init": [StrOptions({"median", "mean", "zeros"})],
        "init_rows": [Interval(Integral, 1, None, closed="left")],
        "eval_rows": [Interval(Integral, 1, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
        "log_every": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device, None],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components=1024, *, lr=1e-3, batch_size=1024, n_steps=None, max_epochs=10, min_steps=2000,
                 warmup_steps=None, lr_decay="linear", decay_start=0.8, dead_latents="auxk", aux_k=None,
                 aux_coef=1 / 32, dead_rows=262144, decoder_bias_init="median", init_rows=16384, eval_rows=65536,
                 chunk_rows=4096, log_every=50, random_state=None, device=None, verbose=False):
        self.n_components = n_components
        self.lr = lr
        self.batch_size = batch_size
        self.n_steps = n_steps
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.warmup_steps = warmup_steps
        self.lr_decay = lr_decay
        self.decay_start = decay_start
        self.dead_latents = dead_latents
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_rows = dead_rows
        self.decoder_bias_init = decoder_bias_init
        self.init_rows = init_rows
        self.eval_rows = eval_rows
        self.chunk_rows = chunk_rows
        self.log_every = log_every
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # optimiser state is for partial_fit continuation only
    _transient = ("_trainer_", "_inference_")

    def __setstate__(self, state):
        self.__dict__.update(state)
        if hasattr(self, "components_"):
            self._build_inference()

    # ------------------------------------------------------------------ family hooks
    def _k(self) -> int:
        """Active latents per row that TopK-like families target (None for the others)."""
        return None

    def _select(self, pre: torch.Tensor, tr: _Trainer) -> Codes:
        raise NotImplementedError

    def _activate(self, pre_sel: torch.Tensor, codes: Codes, tr: _Trainer) -> torch.Tensor:
        return torch.relu(pre_sel)

    def _penalty(self, vals: torch.Tensor, pre_sel: torch.Tensor, codes: Codes, tr: _Trainer):
        return None

    def _after_step(self, vals: torch.Tensor, codes: Codes, tr: _Trainer) -> None:
        pass

    def _infer(self, pre: torch.Tensor) -> torch.Tensor:
        """Dense codes from pre-activations in data units (n x K), the inference rule."""
        raise NotImplementedError

    def _dictionary(self, P: dict) -> torch.Tensor:
        return P["D"]

    def _recon_loss(self, x: torch.Tensor, vals: torch.Tensor, codes: Codes, D: torch.Tensor, b: torch.Tensor):
        """(loss, reconstruction): mean squared error per entry, ~ normalised MSE in the internal units."""
        x_hat = decode(vals, D, codes) + b
        return (x - x_hat).square().sum() / x.numel(), x_hat

    # ------------------------------------------------------------------ initialisation
    def _init_params(self, sample: torch.Tensor, gen: torch.Generator, device) -> tuple[dict, float]:
        """Internal parameters from a sample of rows (data units) and the internal scale c."""
        K, d = int(self.n_components), sample.shape[1]
        b = self._bias_init(sample)
        c = self._scale_for(sample, b)
        D = torch.randn((K, d), generator=gen, dtype=torch.float32).to(device)
        D = D / torch.linalg.vector_norm(D, dim=1, keepdim=True).clamp_min(_EPS)
        P = {"W_e": D.clone(), "b_e": torch.zeros(K, device=device), "b": (c * b).to(device), "D": D}
        return P, c

    def _bias_init(self, sample: torch.Tensor) -> torch.Tensor:
        if self.decoder_bias_init == "zeros":
            return torch.zeros(sample.shape[1], dtype=torch.float32, device=sample.device)
        if self.decoder_bias_init == "mean" or sample.shape[0] < 3:
            return sample.double().mean(0).float()
        return geometric_median(sample[:: max(1, sample.shape[0] // 4096)])

    @staticmethod
    def _scale_for(sample: torch.Tensor, b: torch.Tensor) -> float:
        d = sample.shape[1]
        v = float((sample - b).double().square().sum(1).mean())
        if v <= 1e-12 * (float(sample.double().square().sum(1).mean()) + 1e-30):
            v = float(sample.double().square().sum(1).mean())
        return math.sqrt(d / v) if v > 0 else 1.0

    # ------------------------------------------------------------------ export / import (data units)
    def _export(self, P: dict, c: float) -> dict[str, np.ndarray]:
        """Fitted arrays in the data's units from the internal parameters."""
        out = {
            "components_": self._dictionary(P).detach(),
            "encoder_weight_": P["W_e"].detach(),
            "encoder_bias_": P["b_e"].detach() / c,
            "decoder_bias_": P["b"].detach() / c,
        }
        return {k: v.to("cpu", torch.float32).numpy().copy() for k, v in out.items()}

    def _import(self, device) -> tuple[dict, float]:
        """Internal parameters from the fitted arrays (to continue training after load_state or pickling)."""
        c = float(self.scale_)
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).to(device).clone()  # noqa: E731
        return {"W_e": t(self.encoder_weight_), "b_e": c * t(self.encoder_bias_), "b": c * t(self.decoder_bias_),
                "D": t(self.components_)}, c

    # ------------------------------------------------------------------ schedule
    def _lr_at(self, step: int, total: int | None) -> float:
        warm = self._warmup(total)
        lr = float(self.lr)
        if warm and step < warm:
            return lr * (step + 1) / warm
        if total is None or self.lr_decay == "constant":
            return lr
        start = max(warm, int(self.decay_start * total))
        if step < start or total <= start:
            return lr
        frac = min(1.0, (step - start) / max(1, total - start))
        if self.lr_decay == "linear":
            return lr * (1.0 - frac)
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))

    def _warmup(self, total: int | None) -> int:
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        return min(1000, max(0, int(0.05 * total))) if total else 100

    # ------------------------------------------------------------------ one step
    def _step(self, x: torch.Tensor, tr: _Trainer, total: int | None) -> dict:
        P = tr.params
        B = x.shape[0]
        W_e, b_e, b = P["W_e"], P["b_e"], P["b"]
        xc = (x - b).detach()
        with torch.no_grad():
            pre = torch.addmm(b_e, xc, W_e.T)
        codes = self._select(pre, tr)
        pre_sel = gather_pre(xc, W_e, b_e, b if b.requires_grad else None, codes)
        vals = self._activate(pre_sel, codes, tr)
        D = self._dictionary(P)
        recon, x_hat = self._recon_loss(x, vals, codes, D, b)
        loss = recon
        penalty = self._penalty(vals, pre_sel, codes, tr)
        if penalty is not None:
            loss = loss + penalty
        dead = self._dead_mask(tr)
        n_dead = int(dead.sum())
        aux = None
        if self.dead_latents == "auxk" and n_dead and self.aux_coef > 0:
            aux = self._auxk_loss(x, x_hat, pre, xc, dead, W_e, b_e, D, B)
            if aux is not None:
                loss = loss + self.aux_coef * aux
        tr.opt.zero_grad(set_to_none=True)
        loss.backward()
        if not bool(torch.isfinite(loss.detach())):
            raise ConceptsError(f"{self.method} training diverged (non-finite loss) at step {tr.step}; "
                                "lower lr or check the activations")
        if self._unit_atoms and P["D"].grad is not None:
            with torch.no_grad():  # keep the atoms on the unit sphere: drop the radial part of the gradient
                Dp, g = P["D"], P["D"].grad
                g.addcmul_(Dp, torch.einsum("kd,kd->k", g, Dp)[:, None], value=-1.0)
        lr = self._lr_at(tr.step, total)
        for group in tr.opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        tr.opt.step()
        with torch.no_grad():
            self._project(P)
            fired = codes.cols[vals.detach() > 0]
            tr.rows += B
            tr.last_fired[fired] = tr.rows
            self._after_step(vals.detach(), codes, tr)
        tr.step += 1
        if self.dead_latents == "resample" and tr.step % max(1, self.dead_rows // max(1, B)) == 0 and n_dead:
            with torch.no_grad():
                self._resample(x, x_hat.detach(), dead, tr)
        return {"loss": loss.detach(), "recon": recon.detach(), "nnz": int((vals.detach() > 0).sum()), "rows": B,
                "n_dead": n_dead, "lr": lr, "aux": None if aux is None else aux.detach()}

    def _dead_mask(self, tr: _Trainer) -> torch.Tensor:
        return (tr.rows - tr.last_fired) >= int(self.dead_rows)

    def _auxk_loss(self, x, x_hat, pre, xc, dead, W_e, b_e, D, B):
        """Gao et al.'s AuxK: the residual reconstructed by the top ``aux_k`` dead latents of each row."""
        dead_idx = dead.nonzero().flatten()
        d = x.shape[1]
        kk = int(self.aux_k) if self.aux_k is not None else max(1, min(d // 2, int(self.n_components) // 2))
        kk = min(kk, dead_idx.numel())
        sub = pre[:, dead_idx]
        local = Codes.from_topk(sub, kk)
        codes = Codes(local.rows, dead_idx[local.cols], local.pre, B, pre.shape[1])
        vals = torch.relu(gather_pre(xc, W_e, b_e, None, codes))
        if not bool((vals.detach() > 0).any()):
            return None
        e = (x - x_hat).detach()
        e_hat = decode(vals, D, codes)
        denom = (e - e.mean(0)).square().sum().clamp_min(_EPS)
        return (e - e_hat).square().sum() / denom

    def _resample(self, x, x_hat, dead, tr: _Trainer) -> None:
        """Re-seed dead atoms on the residuals of the batch's worst-reconstructed rows; reset their Adam state."""
        P = tr.params
        if "D" not in P or not self._unit_atoms:
            return
        dead_idx = dead.nonzero().flatten()
        err = (x - x_hat).square().sum(1)
        n = min(dead_idx.numel(), x.shape[0])
        probs = (err / err.sum().clamp_min(_EPS)).cpu().double()
        picked = torch.multinomial(probs, n, replacement=False, generator=tr.gen).to(x.device)
        dead_idx = dead_idx[:n]
        resid = x[picked] - x_hat[picked]
        atoms = resid / torch.linalg.vector_norm(resid, dim=1, keepdim=True).clamp_min(_EPS)
        alive = ~dead
        enc_norm = float(torch.linalg.vector_norm(P["W_e"][alive], dim=1).mean()) if bool(alive.any()) else 1.0
        P["D"][dead_idx] = atoms
        P["W_e"][dead_idx] = 0.2 * enc_norm * atoms
        P["b_e"][dead_idx] = 0
        for name in ("D", "W_e", "b_e"):
            state = tr.opt.state.get(P[name], {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][dead_idx] = 0
        tr.last_fired[dead_idx] = tr.rows

    def _project(self, P: dict) -> None:
        if self._unit_atoms:
            P["D"].div_(torch.linalg.vector_norm(P["D"], dim=1, keepdim=True).clamp_min(_EPS))

    # ------------------------------------------------------------------ data
    def _as_training_data(self, X):
        """(stream or tensor, n_rows, n_features); validates arrays and sets n_features_in_."""
        if isinstance(X, RowStream):
            self.n_features_in_ = X.n_features
            return X, X.n_rows
        T, _ = as_tensor(self, X, reset=True, device=self.device_, nonnegative=self._nonnegative())
        return T, T.shape[0]

    def _nonnegative(self) -> bool:
        return False

    def _sample(self, data, n: int, gen: torch.Generator) -> torch.Tensor:
        if isinstance(data, RowStream):
            seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
            return torch.from_numpy(data.sample(n, seed=seed)).to(self.device_)
        if data.shape[0] <= n:
            return data
        idx = torch.randperm(data.shape[0], generator=gen)[:n].to(data.device)
        return data[idx]

    def _epoch_batches(self, data, epoch: int, gen: torch.Generator):
        if isinstance(data, RowStream):
            B = int(self.batch_size)
            pending = None
            for batch in data.epoch(epoch):
                batch = batch.to(self.device_, non_blocking=True)
                if batch.shape[0] != B and data.batch_size != B:  # re-batch a stream made with another size
                    pending = batch if pending is None else torch.cat([pending, batch])
                    while pending.shape[0] >= B:
                        yield pending[:B]
                        pending = pending[B:]
                    continue
                yield batch
            if pending is not None and pending.shape[0]:
                yield pending
            return
        n = data.shape[0]
        perm = torch.randperm(n, generator=gen).to(data.device)
        B = int(self.batch_size)
        for s in range(0, n, B):
            yield data[perm[s:s + B]]

    # ------------------------------------------------------------------ fitting
    def _new_trainer(self, sample: torch.Tensor, gen: torch.Generator) -> _Trainer:
        P, c = self._init_params(sample, gen, self.device_)
        return _Trainer(P, c, gen, self.device_, float(self.lr), frozen=self._frozen, lr_scales=self._lr_scales())

    def _lr_scales(self) -> dict:
        return {}

    def fit(self, X, y=None):
        """Train on rows ``X``: an (n x D) array or tensor, or a :class:`RowStream`. Returns self.

        Trains ``n_steps`` steps if given, else ``max_epochs`` epochs of ``batch_size`` rows but at least
        ``min_steps`` steps (default 2000: small data sets get more epochs; on the synthetic set's 12 800 rows the
        normalised MSE of a TopK SAE is 7x NMF's after 200 steps, 1.4x after 2000 and 1.1x after 3000,
        docs/evaluation.md "Shared concepts at dataset scope").
        """
        validate_params(self)
        self._check_family_params()
        data, n = self._as_training_data(X)
        gen = make_generator(self.random_state)
        start = time.perf_counter()
        sample = self._sample(data, int(self.init_rows), gen)
        tr = self._new_trainer(sample, gen)
        self._trainer_ = tr
        steps_per_epoch = max(1, math.ceil(n / int(self.batch_size)))
        total = int(self.n_steps) if self.n_steps is not None else max(int(self.min_steps),
                                                                        int(self.max_epochs) * steps_per_epoch)
        history = []
        acc = self._new_acc()
        epoch = 0
        while tr.step < total:
            for batch in self._epoch_batches(data, epoch, gen):
                stats = self._step(batch * tr.scale, tr, total)
                self._accumulate(acc, stats)
                if tr.step % int(self.log_every) == 0 or tr.step == total:
                    history.append(self._log(acc, tr))
                    acc = self._new_acc()
                if tr.step >= total:
                    break
            epoch += 1
        self.history_ = history
        self.n_iter_ = tr.step
        self.n_epochs_ = epoch
        self.n_rows_seen_ = tr.rows
        self.converged_ = self._plateau(history)
        self._finish(tr)
        evaluation = self._sample(data, int(self.eval_rows), gen) if not isinstance(data, RowStream) else sample
        if self._reorder:
            self._order_latents(evaluation, tr)
        self._evaluate(evaluation)
        self.seconds_ = time.perf_counter() - start
        return self

    def partial_fit(self, X, y=None):
        """Steps over one chunk of rows ``X`` (in shuffled batches of ``batch_size``); initialises on the first
        call from ``X`` (or continues a fitted or reloaded model). The learning rate is warmed up, never decayed."""
        first = not hasattr(self, "components_") and not hasattr(self, "_trainer_")
        if first:
            validate_params(self)
            self._check_family_params()
            data, n = self._as_training_data(X)
        else:
            data = X if isinstance(X, RowStream) else as_tensor(self, X, reset=False, device=self.device_,
                                                                nonnegative=self._nonnegative())[0]
        tr = getattr(self, "_trainer_", None)
        if tr is None:
            gen = make_generator(self.random_state)
            if first:
                tr = self._new_trainer(self._sample(data, int(self.init_rows), gen), gen)
            else:
                P, c = self._import(self.device_)
                tr = _Trainer(P, c, gen, self.device_, float(self.lr), frozen=self._frozen,
                              lr_scales=self._lr_scales())
                self._import_extra(tr)
                tr.step = int(getattr(self, "n_iter_", 0) or 0)
                tr.rows = int(getattr(self, "n_rows_seen_", 0) or 0)
                tr.last_fired[:] = tr.rows
            self._trainer_ = tr
        history = list(getattr(self, "history_", []))
        acc = self._new_acc()
        for batch in self._epoch_batches(data, tr.step, tr.gen):
            self._accumulate(acc, self._step(batch * tr.scale, tr, None))
        if acc["steps"]:
            history.append(self._log(acc, tr))
        self.history_ = history
        self.n_iter_ = tr.step
        self.n_rows_seen_ = tr.rows
        self._finish(tr)
        # metrics (and a BatchTopK threshold's calibration) on the chunk just seen
        sample = data if not isinstance(data, RowStream) else torch.from_numpy(
            data.sample(int(self.eval_rows))).to(self.device_)
        self._evaluate(sample[: int(self.eval_rows)])
        return self

    def _import_extra(self, tr: _Trainer) -> None:
        pass

    @staticmethod
    def _plateau(history: list) -> bool:
        """True when the last logged normalised MSE is within 1% of the previous one (SAEs train for a fixed
        schedule; this only says whether the loss had flattened out by its end)."""
        if len(history) < 2:
            return False
        prev, last = history[-2]["nmse"], history[-1]["nmse"]
        return abs(prev - last) <= 0.01 * max(abs(prev), 1e-12)

    @torch.no_grad()
    def _order_latents(self, X: torch.Tensor, tr: _Trainer) -> None:
        """Number the latents by decreasing total code mass on rows ``X`` (times the atom norm), ties by index,
        as the project's other concept extractors; the training state is permuted with them."""
        K = self.components_.shape[0]
        mass = torch.zeros(K, dtype=torch.float64, device=X.device)
        for s in range(0, X.shape[0], int(self.chunk_rows)):
            mass += self._infer(self._pre(X[s:s + int(self.chunk_rows)])).sum(0).double()
        key = (mass * torch.linalg.vector_norm(self._tensors()["components_"].double(), dim=1)).cpu().numpy()
        order = np.argsort(-key, kind="stable")
        if np.array_equal(order, np.arange(K)):
            return
        perm = torch.as_tensor(order, device=tr.device)
        for name, p in tr.params.items():
            if name in _PER_LATENT:
                with torch.no_grad():
                    p.copy_(p[perm])
                state = tr.opt.state.get(p, {})
                for key_ in ("exp_avg", "exp_avg_sq"):
                    if key_ in state:
                        state[key_].copy_(state[key_][perm])
        tr.last_fired.copy_(tr.last_fired[perm])
        keep = {name: getattr(self, name) for name in ("threshold_",)
                if name in self.__dict__ and np.ndim(getattr(self, name)) == 0}
        self._finish(tr)
        self.__dict__.update(keep)  # a calibrated scalar threshold does not depend on the order

    def _check_family_params(self) -> None:
        pass

    def _finish(self, tr: _Trainer) -> None:
        for name, value in self._export(tr.params, tr.scale).items():
            setattr(self, name, value)
        self.scale_ = float(tr.scale)
        self.n_components_ = int(self.components_.shape[0])
        self.n_features_in_ = int(self.components_.shape[1])
        self.dead_latents_ = np.flatnonzero(self._dead_mask(tr).cpu().numpy())
        self._build_inference()

    @staticmethod
    def _new_acc() -> dict:
        return {"steps": 0, "rows": 0, "loss": 0.0, "recon": 0.0, "nnz": 0, "n_dead": 0, "lr": 0.0}

    @staticmethod
    def _accumulate(acc: dict, stats: dict) -> None:
        acc["steps"] += 1
        acc["rows"] += stats["rows"]
        acc["loss"] += float(stats["loss"])
        acc["recon"] += float(stats["recon"])
        acc["nnz"] += stats["nnz"]
        acc["n_dead"] = stats["n_dead"]
        acc["lr"] = stats["lr"]

    def _log(self, acc: dict, tr: _Trainer) -> dict:
        steps = max(1, acc["steps"])
        entry = {"step": tr.step, "rows": tr.rows, "loss": acc["loss"] / steps, "nmse": acc["recon"] / steps,
                 "l0": acc["nnz"] / max(1, acc["rows"]), "dead_share": acc["n_dead"] / int(self.n_components),
                 "lr": acc["lr"]}
        if self.verbose:
            print(f"{self.method} step {entry['step']}: loss {entry['loss']:.4f} nmse~{entry['nmse']:.4f} "
                  f"L0 {entry['l0']:.1f} dead {entry['dead_share']:.1%}")
        return entry

    # ------------------------------------------------------------------ inference
    def _build_inference(self) -> None:
        """Device tensors of the fitted arrays, built once (transform never changes the estimator)."""
        dev = self.device_
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).to(dev)  # noqa: E731
        self._inference_ = {name: t(getattr(self, name)) for name in ("components_",) + self._state
                            if np.ndim(getattr(self, name)) > 0}

    def _tensors(self) -> dict:
        inf = getattr(self, "_inference_", None)
        if inf is None:  # built by fit / load_state / unpickling; rebuilt only if it was dropped
            self._build_inference()
            inf = self._inference_
        return inf

    def _pre(self, X: torch.Tensor) -> torch.Tensor:
        t = self._tensors()
        return torch.addmm(t["encoder_bias_"], X - t["decoder_bias_"], t["encoder_weight_"].T)

    def _codes(self, X: torch.Tensor) -> torch.Tensor:
        out = torch.empty((X.shape[0], self.components_.shape[0]), dtype=torch.float32, device=X.device)
        for s in range(0, X.shape[0], int(self.chunk_rows)):
            out[s:s + int(self.chunk_rows)] = self._infer(self._pre(X[s:s + int(self.chunk_rows)]))
        return out

    def transform(self, X):
        """Codes ``z`` (n x K, non-negative, sparse) of rows ``X`` (n x D)."""
        check_fitted(self)
        T, is_torch = as_tensor(self, X, reset=False, device=self.device_, nonnegative=self._nonnegative())
        return output(self._codes(T), is_torch)

    def fit_transform(self, X, y=None):
        """Fit, then the codes of the training rows ``X`` (an array or tensor: a stream's codes do not fit in
        memory by design; use ``fit(stream)`` and ``transform`` / ``encode_sparse`` chunk by chunk)."""
        if isinstance(X, RowStream):
            raise ConceptsError("fit_transform needs the rows in memory; call fit(stream), then transform chunks")
        return self.fit(X).transform(X)

    def encode_sparse(self, X):
        """Codes of rows ``X`` as a SciPy CSR matrix (n x K), chunk by chunk (for wide dictionaries)."""
        import scipy.sparse as sp

        check_fitted(self)
        T, _ = as_tensor(self, X, reset=False, device=self.device_, nonnegative=self._nonnegative())
        parts = []
        for s in range(0, T.shape[0], int(self.chunk_rows)):
            Z = self._infer(self._pre(T[s:s + int(self.chunk_rows)])).cpu().numpy()
            parts.append(sp.csr_matrix(Z))
        return sp.vstack(parts, format="csr")

    def inverse_transform(self, Z):
        """Reconstruction ``z D + b`` of codes ``Z`` (n x K)."""
        check_fitted(self)
        is_torch = isinstance(Z, torch.Tensor)
        t = self._tensors()
        T = Z.detach().to(self.device_, torch.float32) if is_torch else torch.from_numpy(
            np.ascontiguousarray(Z, dtype=np.float32)).to(self.device_)
        if T.ndim != 2 or T.shape[1] != self.components_.shape[0]:
            raise InputError(f"codes must have shape (n, {self.components_.shape[0]}), got {tuple(T.shape)}")
        return output(torch.addmm(t["decoder_bias_"], T, t["components_"]), is_torch)

    def _evaluate(self, X: torch.Tensor) -> None:
        """Reconstruction error, normalised MSE, L0 and dead share of the inference rule on rows ``X``."""
        t = self._tensors()
        err2 = norm2 = cent2 = 0.0
        nnz = 0
        fired = torch.zeros(self.components_.shape[0], dtype=torch.bool, device=X.device)
        mean = X.double().mean(0).float()
        for s in range(0, X.shape[0], int(self.chunk_rows)):
            x = X[s:s + int(self.chunk_rows)]
            z = self._infer(self._pre(x))
            x_hat = torch.addmm(t["decoder_bias_"], z, t["components_"])
            err2 += float((x - x_hat).double().square().sum())
            norm2 += float(x.double().square().sum())
            cent2 += float((x - mean).double().square().sum())
            nnz += int((z > 0).sum())
            fired |= (z > 0).any(0)
        self.reconstruction_err_ = math.sqrt(err2 / norm2) if norm2 > 0 else 0.0
        self.normalized_mse_ = err2 / cent2 if cent2 > 0 else 0.0
        self.l0_ = nnz / max(1, X.shape[0])
        self.dead_share_ = float(1.0 - fired.float().mean())
        self.eval_rows_ = int(X.shape[0])

    # ------------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Fitted arrays besides ``components_`` that :meth:`load_state` needs (data units)."""
        check_fitted(self)
        return {name: np.asarray(getattr(self, name)) for name in self._state}

    def load_state(self, components, state: dict, info: dict | None = None):
        """Restore a fitted estimator from ``components_`` and :meth:`state_arrays` (and optional attributes)."""
        self.components_ = np.asarray(components, dtype=np.float32)
        for name in self._state:
            if name not in state:
                raise ConceptsError(f"saved {self.method} state lacks {name!r}; refit the dictionary")
            value = np.asarray(state[name])
            if value.ndim == 0:
                value = value.item()
            elif np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float32)
            setattr(self, name, value)
        self.n_components_, self.n_features_in_ = self.components_.shape
        for key, value in (info or {}).items():
            setattr(self, key, value)
        self.__dict__.pop("_trainer_", None)
        self._build_inference()
        return self
