"""JumpReLU sparse autoencoder (Rajamanoharan et al. 2024): a learned threshold per latent, an L0 penalty.

``z_k = pre_k * H(pre_k - θ_k)`` with ``pre = W_e (a - b) + b_e``; loss = MSE + ``l0_coef * ||z||_0``.  Neither
the step function nor the L0 norm has a useful gradient in θ, so both use the straight-through estimator of the
paper: with a rectangle kernel K of width ``bandwidth``,

    d z_k / d θ_k    := -(θ_k / ε) K((pre_k - θ_k) / ε),
    d H_k / d θ_k    := -(1 / ε)   K((pre_k - θ_k) / ε).

Only the pre-activations within ε/2 of the threshold contribute.  SAELens's default ε = 1e-3 (in its units) lets
almost no pre-activation into the window, and the thresholds barely move (SAELens #494/#718).  Here ε is in the
rescaled units (pre-activations ~1), 0.05 by default, and θ is learned as log θ: the thresholds move (a test plants
a problem and checks that they travel from their initial value).
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ._sparse import Codes
from .base import SparseAutoencoder


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        window = ((pre - theta).abs() < 0.5 * eps).to(g.dtype)
        grad_pre = g * (pre > theta).to(g.dtype)
        grad_theta = -(theta / eps) * window * g
        return grad_pre, grad_theta, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        window = ((pre - theta).abs() < 0.5 * ctx.eps).to(g.dtype)
        return None, -(1.0 / ctx.eps) * window * g, None


class JumpReLUSAE(SparseAutoencoder):
    """JumpReLU SAE with learned per-latent thresholds ``threshold_`` (data units) and an L0 penalty.

    Parameters: ``l0_coef`` (weight of the mean number of active latents per row against the MSE per entry of the
    rescaled data), ``bandwidth`` (ε of the straight-through estimator) and ``threshold_init`` (θ at the start),
    both in the rescaled units, ``threshold_lr_scale`` (the thresholds' learning rate over ``lr``: log θ needs
    larger steps than the weights to cross the range of the pre-activations in a short fit); others as
    :class:`~concepts.factorize.sae.base.SparseAutoencoder`.
    """

    method = "jumprelu_sae"
    _state = SparseAutoencoder._state + ("threshold_",)
    _parameter_constraints = {**SparseAutoencoder._parameter_constraints,
                              "l0_coef": [Interval(Real, 0, None, closed="left")],
                              "bandwidth": [Interval(Real, 0, None, closed="neither")],
                              "threshold_init": [Interval(Real, 0, None, closed="neither")],
                              "threshold_lr_scale": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, n_components=1024, *, l0_coef=1e-2, bandwidth=0.05, threshold_init=0.1,
                 threshold_lr_scale=10.0, lr=1e-3,
                 batch_size=1024, n_steps=None, max_epochs=10, min_steps=2000, warmup_steps=None, lr_decay="linear",
                 decay_start=0.8,
                 dead_latents="auxk", aux_k=None, aux_coef=1 / 32, dead_rows=262144, decoder_bias_init="median",
                 init_rows=16384, eval_rows=65536, chunk_rows=4096, log_every=50, random_state=None, device=None,
                 verbose=False):
        self.l0_coef = l0_coef
        self.bandwidth = bandwidth
        self.threshold_init = threshold_init
        self.threshold_lr_scale = threshold_lr_scale
        super().__init__(n_components, lr=lr, batch_size=batch_size, n_steps=n_steps, max_epochs=max_epochs,
                         min_steps=min_steps, warmup_steps=warmup_steps, lr_decay=lr_decay, decay_start=decay_start,
                         dead_latents=dead_latents, aux_k=aux_k, aux_coef=aux_coef, dead_rows=dead_rows,
                         decoder_bias_init=decoder_bias_init, init_rows=init_rows, eval_rows=eval_rows,
                         chunk_rows=chunk_rows, log_every=log_every, random_state=random_state, device=device,
                         verbose=verbose)

    def _init_params(self, sample, gen, device):
        P, c = super()._init_params(sample, gen, device)
        P["log_theta"] = torch.full((int(self.n_components),), math.log(float(self.threshold_init)), device=device)
        return P, c

    def _lr_scales(self):
        return {"log_theta": float(self.threshold_lr_scale)}

    def _theta(self, P):
        return P["log_theta"].exp()

    def _select(self, pre, tr):
        low = self._theta(tr.params).detach() - 0.5 * float(self.bandwidth)
        return Codes.from_mask(pre, pre > low[None, :])  # the active entries and the window below the threshold

    def _activate(self, pre_sel, codes, tr):
        theta = self._theta(tr.params)[codes.cols]
        return _JumpReLU.apply(pre_sel, theta, float(self.bandwidth))

    def _penalty(self, vals, pre_sel, codes, tr):
        theta = self._theta(tr.params)[codes.cols]
        return float(self.l0_coef) * _Step.apply(pre_sel, theta, float(self.bandwidth)).sum() / codes.n_rows

    def _export(self, P, c):
        out = super()._export(P, c)
        out["threshold_"] = (self._theta(P).detach() / c).to("cpu", torch.float32).numpy().copy()
        return out

    def _import(self, device):
        P, c = super()._import(device)
        theta = torch.as_tensor(np.asarray(self.threshold_, np.float32)).to(device) * c
        P["log_theta"] = theta.clamp_min(1e-12).log()
        return P, c

    def _infer(self, pre):
        theta = self._tensors()["threshold_"]
        return pre * (pre > theta[None, :]).to(pre.dtype)
