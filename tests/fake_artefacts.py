"""Stage artefacts written by hand, for the tests of the stages that read them (no model to run)."""
from __future__ import annotations

import numpy as np

from concepts.artefacts import atomic_h5, base_attributes, config_hash, stage_path, string_dataset, write_attrs


def write_patches_activations(run, class_id, maps, *, skipped=None, class_index=3, image_size=224, paths=None,
                              config=None, **attrs):
    """A patches-mode ``activations/<class>.h5`` in the layout of docs/ARCHITECTURE.md.

    ``maps`` is (images, positions, channels) on a square grid; the rows are the kept images' positions. Keyword
    ``attrs`` override the default attributes (model 'fake', class name = class id, ...).
    """
    maps = np.asarray(maps)
    n_images, n_pos, _ = maps.shape
    skipped = np.zeros(n_images, bool) if skipped is None else np.asarray(skipped, bool)
    kept = np.flatnonzero(~skipped)
    side = int(round(np.sqrt(n_pos)))
    cfg = config or {"mode": "patches"}
    path = stage_path(run, "extract", class_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_h5(path) as handle:
        handle.create_dataset("maps", data=maps)
        images = handle.create_group("images")
        string_dataset(images, "path", paths or [f"{class_id}/{i}.jpg" for i in range(n_images)])
        string_dataset(images, "sha256", ["0" * 64] * n_images)
        string_dataset(images, "error", [""] * n_images)
        images.create_dataset("width", data=np.full(n_images, image_size, np.int32))
        images.create_dataset("height", data=np.full(n_images, image_size, np.int32))
        images.create_dataset("skipped", data=skipped)
        images.create_dataset("logit", data=np.zeros(n_images, np.float32))
        images.create_dataset("predicted", data=np.zeros(n_images, np.int32))
        rows = handle.create_group("rows")
        rows.create_dataset("image", data=np.repeat(kept, n_pos).astype(np.int32))
        grid = np.array([(i, j) for i in range(side) for j in range(side)], np.int32)
        rows.create_dataset("position", data=np.tile(grid, (len(kept), 1)))
        rows.create_dataset("box", data=np.zeros((len(kept) * n_pos, 4), np.int32))
        values = dict(base_attributes(), stage="extract", class_id=class_id, class_name=class_id,
                      class_index=class_index, class_index_source="test", model="fake", weights="none",
                      weights_sha256="", layer="features", layout="spatial", grid=[side, side], n_prefix=0,
                      preprocessing={"input_size": image_size}, mode="patches", patch_size=0, stride=0,
                      dtype=str(maps.dtype), config=cfg, config_hash=config_hash(cfg))
        values.update(attrs)
        write_attrs(handle, values)
    return path
