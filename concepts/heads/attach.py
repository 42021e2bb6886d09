"""Attach a head to a loaded backbone without touching it: a view of the model with another classifier."""
from __future__ import annotations

import copy
from collections import OrderedDict

from torch import nn

from ..errors import ConceptsError


def classifier_name(model: nn.Module) -> str:
    """The dotted name of the model's classifier module (``head``, ``fc``, ``classifier``, ``head.fc`` ...)."""
    if not hasattr(model, "get_classifier"):
        raise ConceptsError(f"{type(model).__name__} has no classifier slot (get_classifier); a head can be "
                            "attached to timm and open_clip models")
    classifier = model.get_classifier()
    for name, module in model.named_modules():
        if module is classifier and name:
            return name
    raise ConceptsError(f"the classifier of {type(model).__name__} is not one of its modules")


def with_head(model: nn.Module, head: nn.Module | None) -> nn.Module:
    """A shallow copy of ``model`` that shares every module but ends in ``head`` (None: no classifier, so that
    the model outputs the pooled features its classifier would see). ``model`` itself is left as it is."""
    name = classifier_name(model)
    view = copy.copy(model)
    view._modules = OrderedDict(model._modules)  # the view's own children table: replacing one leaves the model's
    top, _, rest = name.partition(".")
    if rest:  # the classifier sits inside a small head module (ConvNeXt's head.fc): copy that module alone
        view._modules[top] = copy.deepcopy(model._modules[top])
    parent = view
    for part in name.split(".")[:-1]:
        parent = getattr(parent, part)
    setattr(parent, name.split(".")[-1], head if head is not None else nn.Identity())
    view.num_classes = int(getattr(head, "out_features", 0) or len(getattr(head, "classes", []) or []))
    return view


def headed_split(split, head: nn.Module | None):
    """The split of ``split``'s backbone with ``head`` as its classifier (same cut, same preprocessing)."""
    from ..models import ModelSplit

    if head is not None:
        head = head.to(split.device)
    view = with_head(split.model, head)
    layer = None if split.layer in (None, "", "features") else split.layer
    out = ModelSplit(view, layer=layer, input_size=split.input_size)
    out.preprocessing = getattr(split, "preprocessing", None)
    return out
