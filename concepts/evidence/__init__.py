"""The evidence a reader is shown about one class, computed once for the atlas, the exports and ``info``.

* :mod:`.methods` - what each importance method's numbers are (labels, units, ranking, the value shown), and
  when two methods are the same closed form (so one piece of evidence, not two);
* :mod:`.diagnostics` - how much of the class logit the concepts explain (decomposition into concepts,
  residual and bias), the fit of the concept bank (reconstruction error, convergence) and the fidelity scores,
  each with its plain-language explanation;
* :mod:`.crops` - the top crops of every concept, with their boxes in model-input and original-photo pixels.

Everything here reads a :class:`~concepts.schema.classdata.ClassData` and returns plain numbers: no file is
opened, no model is loaded.
"""
from .crops import TopCrop, input_box_to_original, top_crops
from .diagnostics import DIAGNOSTIC_COLUMNS, EXPLANATIONS, Diagnostics, class_diagnostics
from .methods import (METHOD_LABELS, PREFERENCE, MethodValues, choose_method, coincident_methods, method_values,
                      ranking)

__all__ = ["TopCrop", "top_crops", "input_box_to_original", "Diagnostics", "class_diagnostics",
           "DIAGNOSTIC_COLUMNS", "EXPLANATIONS", "METHOD_LABELS", "PREFERENCE", "MethodValues", "choose_method",
           "coincident_methods", "method_values", "ranking"]
