"""Which head a stage explains, resolved against a loaded backbone: at extraction from ``model.head``, later from
the run (its trained probe, ``RUN/probe/probe.npz``, wins) or from what the activations recorded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClassSkipped, ConceptsError
from ..schema.probe import probe_path, read_probe
from .spec import HeadSpec


@dataclass
class ResolvedHead:
    """A head ready to use: ``split`` (the backbone's split with the head as classifier; the backbone's own for
    ``model`` and ``none``), its class ids (probe, zeroshot) and its provenance attributes."""

    kind: str  # model | none | probe | zeroshot
    split: Any
    request: str = "model"
    classes: list[str] | None = None
    class_names: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = "settings"  # settings | activations | run probe

    @property
    def scores(self) -> bool:
        """Whether there is a class score to explain."""
        return self.kind != "none"

    def class_index(self, class_id: str) -> int | None:
        """The logit of ``class_id`` under this head (None: the model's own head decides, see datasets.labels)."""
        if self.classes is None:
            return None
        if class_id not in self.classes:
            shown = ", ".join(self.classes[:8]) + (" ..." if len(self.classes) > 8 else "")
            raise ClassSkipped(f"not among the {self.kind} head's classes ({shown}); rerun `concepts probe RUN` "
                               "or give a head that has it")
        return self.classes.index(class_id)

    def class_name(self, class_id: str) -> str:
        if self.classes and self.class_names and class_id in self.classes:
            return self.class_names[self.classes.index(class_id)]
        return class_id

    def attributes(self) -> dict[str, Any]:
        """The head's provenance as file attributes (``head``, ``head_request``, ``head_source`` and the rest)."""
        return {"head": self.kind, "head_request": self.request, "head_source": self.source, **self.provenance}


def has_classifier(model) -> bool:
    """False only for a model that says it has no classes (timm's ``num_classes == 0``)."""
    count = getattr(model, "num_classes", None)
    return count is None or int(count) > 0


def resolve_head(spec: HeadSpec | str | None, split, info: dict[str, Any] | None = None,
                 source: str = "settings") -> ResolvedHead:
    """Attach the head ``spec`` asks for to ``split`` (the model's own classifier for ``model``; a head-free
    model then has none: the caller says so)."""
    from .attach import headed_split

    spec = spec if isinstance(spec, HeadSpec) else HeadSpec.parse(spec)
    if spec.kind == "model":
        kind = "model" if has_classifier(split.model) else "none"
        return ResolvedHead(kind, split, "model", source=source,
                            provenance={} if kind == "model" else {"head_reason": "the model has no classifier"})
    if spec.kind == "none":
        return ResolvedHead("none", split, "none", source=source)
    if spec.kind == "probe":
        from .linear import read_linear_head

        head, provenance = read_linear_head(spec.file())
        _check_features(split, head.in_features, spec)
        return ResolvedHead("probe", headed_split(split, head), spec.request(), head.classes, head.class_names,
                            provenance, source)
    from ..models.openclip import OpenClipImageTower, text_model_id
    from .zeroshot import read_prompts, zeroshot_head, zeroshot_provenance

    if not isinstance(split.model, OpenClipImageTower):
        raise ConceptsError("--head zeroshot needs a CLIP model: --model open_clip:ARCH[@TAG] (e.g. "
                            "open_clip:ViT-B-32@openai), whose text tower embeds the prompts")
    prompts = read_prompts(spec.file())
    head = zeroshot_head(split.model, prompts)
    provenance = zeroshot_provenance(spec.file(), prompts, text_model_id(split.model, info or {}))
    return ResolvedHead("zeroshot", headed_split(split, head), spec.request(), head.classes, head.class_names,
                        provenance, source)


def pooled_dim(split) -> int:
    """The width of the pooled features a classifier of ``split``'s model reads."""
    model = split.model
    for name in ("head_hidden_size", "num_features", "embed_dim"):
        value = getattr(model, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return int(split.n_channels)


def _check_features(split, width: int, spec: HeadSpec) -> None:
    have = pooled_dim(split)
    if width != have:
        raise ConceptsError(f"the head {spec.source} reads {width} features, but {type(split.model).__name__}'s "
                            f"pooled features have {have}; train it on this model (`concepts probe RUN`)")


# ----------------------------------------------------------------------------- after extraction
def run_probe_record(run: str | Path) -> dict[str, str] | None:
    """How a run's trained probe enters the lineage of the files that use it (None when the run has none)."""
    path = probe_path(run)
    if not path.is_file():
        return None
    probe = read_probe(path)
    return {"creation_id": probe.identity, "config_hash": probe.sha256[:16]}


def head_for_artefact(run: str | Path, attrs: dict[str, Any], split, info: dict[str, Any] | None = None
                      ) -> ResolvedHead:
    """The head the later stages explain for an activations file: the run's trained probe when there is one, else
    the head the file was extracted with (its file checked against the recorded sha256)."""
    path = probe_path(run)
    if path.is_file():
        return resolve_head(HeadSpec("probe", str(path.resolve())), split, info, source="run probe")
    recorded = str(attrs.get("head_request") or "model")
    if str(attrs.get("head", "model")) == "none":
        recorded = "none"
    resolved = resolve_head(recorded, split, info, source="activations")
    expected = attrs.get("head_sha256")
    if expected and resolved.provenance.get("head_sha256") != expected:
        raise ConceptsError(f"the head {resolved.provenance.get('head_file')} has changed since the activations were "
                            f"extracted (sha256 {str(resolved.provenance.get('head_sha256'))[:12]} != "
                            f"{str(expected)[:12]}); extract again with --overwrite")
    return resolved
