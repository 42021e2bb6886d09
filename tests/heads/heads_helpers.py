"""Small head-free backbones built in the tests (timm, random weights), with the provenance the stages record."""
from __future__ import annotations

RUN_CLASSES = ["n01440764", "n03000684"]  # tench, chain saw (as tests/conftest.py's real run)


def tiny_split(name: str, num_classes: int = 0, **kwargs):
    """``(split, info)`` of a random-weight timm model built here (not through the loader: e.g. without a
    classifier, or at another input size); use ``ModelCache.adopt`` for the later stages."""
    import timm
    import torch

    from concepts.models import ModelSplit, Preprocessing
    from concepts.models.loading import state_dict_sha256

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs).eval()
    prep = Preprocessing.from_model(net)
    if "img_size" in kwargs:  # timm's data config keeps the architecture's default size
        prep = Preprocessing(int(kwargs["img_size"]), prep.interpolation, prep.crop_pct, prep.mean, prep.std)
    split = ModelSplit(net, input_size=prep.input_size)
    split.preprocessing = prep
    info = {"model": name, "weights": "random", "weights_sha256": state_dict_sha256(net.state_dict()),
            "checkpoint": None, "layer": split.layer, "preprocessing": prep.to_dict()}
    return split, info


def adopted(split, run, class_id):
    """A ModelCache that gives ``split`` for the artefacts of ``run`` (a model the loader cannot rebuild)."""
    from concepts.models import ModelCache
    from concepts.schema import open_run

    models = ModelCache()
    with open_run(run).activations(class_id) as cache:
        models.adopt(split, dict(cache.attrs))
    return models
