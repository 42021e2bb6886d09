"""Importance on real Imagenette classes with the bundled EfficientNet-Lite0 (CPU, a few seconds)."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # loads the model (~15-30 s on 2 shared cores)

_ROOT = Path(__file__).resolve().parents[2]  # the shared data beside the project, found from a worktree too
DATA = next((p / "shared" / "data" for p in _ROOT.parents if (p / "shared" / "data").is_dir()),
            _ROOT.parent / "shared" / "data") / "imagenette" / "val50"
CLASSES = {"n01440764": 0, "n03000684": 491}  # tench, chain saw (ImageNet indices)
N_IMAGES, R = 6, 10


@pytest.fixture(scope="module")
def real_classes():
    if not DATA.is_dir():
        pytest.skip(f"Imagenette sample not found at {DATA}")
    from PIL import Image
    from sklearn.decomposition import NMF

    from concepts.models import load_split

    split, _ = load_split(device="cpu")
    prep = split.preprocessing
    out = {}
    for wnid, index in CLASSES.items():
        files = sorted((DATA / wnid).glob("*.JPEG"))[:N_IMAGES]
        x = torch.stack([prep.normalize(prep.to_tensor(Image.open(f).convert("RGB"))) for f in files])
        with torch.no_grad():
            A = split.positions(split.g(x))  # (n, 49, 1280)
        n, N, D = A.shape
        nmf = NMF(R, init="nndsvda", max_iter=200, random_state=0).fit(A.reshape(-1, D).numpy())
        U = nmf.transform(A.reshape(-1, D).numpy()).reshape(n, N, R).astype(np.float32)
        W = nmf.components_.astype(np.float32)
        out[wnid] = (index, A, torch.from_numpy(U), torch.from_numpy(W))
    return split, out


def test_lite0_head_is_linear_and_split_logits(real_classes):
    split, classes = real_classes
    assert split.linear_head() is not None
    index, A, U, W = classes["n01440764"]
    from concepts.importance import reconstruction_fidelity

    fid = reconstruction_fidelity(A, U, W, split.h_positions, index)
    assert fid["logit_original"] > 5  # the model is confident on its own activations
    assert 0 < fid["relative_error"] < 1


@pytest.mark.parametrize("wnid", list(CLASSES))
def test_deletion_falls_faster_with_importance_ranking(real_classes, wnid):
    from concepts.importance import ConceptScorer, GradientInput, SobolImportance, c_deletion, c_insertion

    split, classes = real_classes
    index, A, U, W = classes[wnid]
    residual = A - U @ W
    head, lin = split.h_positions, split.linear_head()
    # the general (head-calling) Sobol path, as for a non-linear head
    sobol = SobolImportance(designs=32, exact="off", batch_size=256).attribute(U, W, head, index, residual=residual)
    grad = GradientInput().attribute(U, W, head, index, linear_head=lin, residual=residual)
    scorer = ConceptScorer(U, W, head, index, residual=residual, batch_size=256)
    for result in (sobol, grad):
        ranking = result.class_importance
        forward = c_deletion(scorer, ranking)
        reverse = c_deletion(scorer, -ranking)
        assert forward["auc"] < reverse["auc"] - 0.5, (result.method, forward["auc"], reverse["auc"])
        assert c_insertion(scorer, ranking)["auc"] > c_insertion(scorer, -ranking)["auc"]
    # Sobol's sampled path (32 Halton designs) ranks concepts like the closed form of the linear head
    from scipy.stats import spearmanr

    exact = SobolImportance().attribute(U, W, head, index, linear_head=lin, residual=residual)
    assert spearmanr(exact.class_importance, sobol.class_importance)[0] > 0.5
