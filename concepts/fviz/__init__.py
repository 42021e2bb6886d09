"""Feature visualisation: MACO images of every concept (and of the class logit), with transparency maps.

The method (Fel et al. 2023): optimise the phase of an image's Fourier spectrum under a fixed natural magnitude
spectrum (:mod:`~concepts.fviz.spectrum`, :mod:`~concepts.fviz.parametrization`), on random crops with noise
(:mod:`~concepts.fviz.crops`), for an objective on a concept direction or a logit
(:mod:`~concepts.fviz.objectives`), many images in one forward pass (:mod:`~concepts.fviz.maco`). The stage
(:mod:`~concepts.fviz.stage`) writes ``RUN/fviz/<class>.h5``. Names are imported on first use.
"""
from .._lazy import lazy_attributes

_PUBLIC = {
    "Maco": ".maco", "MacoResult": ".maco", "evaluate": ".maco", "Evaluation": ".maco",
    "Target": ".objectives", "Objective": ".objectives",
    "FourierImages": ".parametrization",
    "Spectrum": ".spectrum", "estimate_spectrum": ".spectrum", "load_spectrum": ".spectrum",
    "visualize_bank": ".compute", "photo_spectrum": ".compute", "BankVisualisations": ".compute",
    "visualize_subconcepts": ".subconcepts",
    "fviz_run": ".stage", "fviz_class": ".stage", "load_fviz": ".stage", "maco_from_settings": ".stage",
    "write_pngs": ".images", "rgba": ".images",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
