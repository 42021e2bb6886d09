"""Heads: the class score a run explains, when it is not (only) the model's own classifier.

* ``model``: the model's classifier (timm's ``get_classifier()``), as before;
* ``probe:FILE``: a linear head (weight C x D, bias C, class ids) on the pooled features the classifier would see,
  e.g. the one ``concepts probe RUN`` trains (:mod:`concepts.probe`) for a head-free backbone (DINOv2, a CLIP tower);
* ``zeroshot:PROMPTS``: a CLIP zero-shot head, ``logit_scale * cos(image embedding, text embedding)`` from class
  prompts through the text tower of an ``open_clip:`` model;
* ``none``: no class score; importance is replaced by prevalence (:mod:`concepts.heads.prevalence`).

A head is attached to a loaded backbone as its classifier on a *view* of the model (:func:`with_head`: the same
modules, another classifier), so the split ``f = h o g``, its fast paths and ``linear_head()`` (a probe on a
global-average-pooled CNN is linear in the pooled features: the closed forms apply) work unchanged.
"""
from .spec import HEAD_KINDS, HeadSpec

__all__ = ["HEAD_KINDS", "HeadSpec"]
