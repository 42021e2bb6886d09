"""Evaluation suite: synthetic ground truth, concept recovery, stability and the method comparison.

Modules (imported on demand, so that importing this package stays cheap):

* :mod:`.synthetic` — scenes with planted concepts and exact per-pixel label maps;
* :mod:`.synthetic_model` — the small CNN ``synth_cnn`` (registered in timm), its training, ``make_synthetic``;
* :mod:`.subtypes` — recursive sub-concepts against the planted sub-types of the ``subtypes`` variant;
* :mod:`.shared` — a dataset-scope dictionary: each shared planted concept one atom of every class's view;
* :mod:`.recovery` — Hungarian-matched IoU / purity of concept maps against the masks, top concept = key;
* :mod:`.stability` — seed and subsample refits matched by the Hungarian algorithm on cosine similarity;
* :mod:`.baselines` — ``RandomAtoms``, the floor;
* :mod:`.compare` — ``evaluate_run(run, EvalConfig(...))``: one row per (class, method);
* :mod:`.report` — CSV, plots, markdown and HTML.
"""
