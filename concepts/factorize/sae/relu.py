"""ReLU sparse autoencoder with an L1 penalty (the original SAE of Bricken et al. 2023 / Cunningham et al. 2023).

``z = ReLU(W_e (a - b) + b_e)``; loss = MSE + ``l1_coef * sum_k z_k ||D_k||`` (atoms of unit norm, so the
penalty is the codes' L1 norm).  Sparsity is controlled by ``l1_coef`` instead of a fixed k; the penalty also
shrinks the active codes (the reason TopK and JumpReLU were proposed).
"""
from __future__ import annotations

from numbers import Real

import torch
from sklearn.utils._param_validation import Interval

from ._sparse import Codes
from .base import SparseAutoencoder


class ReLUSAE(SparseAutoencoder):
    """ReLU + L1 SAE.  ``l1_coef`` weighs the L1 norm of the codes per row against the mean squared error per
    entry of the rescaled data (rows of mean squared norm D, see the base class), so it does not depend on the
    data's units.  Other parameters: see :class:`~concepts.factorize.sae.base.SparseAutoencoder`."""

    method = "relu_sae"
    _parameter_constraints = {**SparseAutoencoder._parameter_constraints,
                              "l1_coef": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, n_components=1024, *, l1_coef=1e-2, lr=1e-3, batch_size=1024, n_steps=None, max_epochs=10,
                 min_steps=2000, warmup_steps=None, lr_decay="linear", decay_start=0.8, dead_latents="auxk", aux_k=None,
                 aux_coef=1 / 32, dead_rows=262144, decoder_bias_init="median", init_rows=16384, eval_rows=65536,
                 chunk_rows=4096, log_every=50, random_state=None, device=None, verbose=False):
        self.l1_coef = l1_coef
        super().__init__(n_components, lr=lr, batch_size=batch_size, n_steps=n_steps, max_epochs=max_epochs,
                         min_steps=min_steps, warmup_steps=warmup_steps, lr_decay=lr_decay, decay_start=decay_start,
                         dead_latents=dead_latents, aux_k=aux_k, aux_coef=aux_coef, dead_rows=dead_rows,
                         decoder_bias_init=decoder_bias_init, init_rows=init_rows, eval_rows=eval_rows,
                         chunk_rows=chunk_rows, log_every=log_every, random_state=random_state, device=device,
                         verbose=verbose)

    def _select(self, pre, tr):
        return Codes.from_mask(pre, pre > 0)

    def _penalty(self, vals, pre_sel, codes, tr):
        return float(self.l1_coef) * vals.sum() / codes.n_rows

    def _infer(self, pre):
        return torch.relu_(pre)
