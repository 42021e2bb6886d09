"""The artefacts as code: every file a stage writes, its layout, writer and reader, defined once.

* :mod:`~concepts.schema.layout`: where files live in ``RUN/`` (``stage_path``, ``safe_filename``);
* :mod:`~concepts.schema.spec`: the datasets and attributes of each file, as data (docs/ARCHITECTURE.md's tables);
* :mod:`~concepts.schema.hdf5`: the checked opening, the atomic writing and the attribute encoding — the only module
  that opens artefacts with h5py;
* :mod:`~concepts.schema.activations`, :mod:`~concepts.schema.concepts`, :mod:`~concepts.schema.importance`,
  :mod:`~concepts.schema.fviz`: one writer and one typed reader per stage file; :mod:`~concepts.schema.runfiles`:
  the run-level files;
* :mod:`~concepts.schema.run`: :class:`RunFolder`, a run as an object (``open_run``).
"""
from .activations import ACTIVATIONS, ActivationCache, ActivationsWriter, ImageTable, RowTable
from .concepts import CONCEPTS, ConceptsRecord, ConceptsWriter, read_concepts
from .dictionary import DICTIONARY, DictionaryRecord, read_dictionary, write_dictionary
from .hashing import config_hash, file_sha256
from .fviz import FVIZ, FvizRecord, FvizSubconcepts, read_fviz, write_fviz
from .hdf5 import FORMAT_VERSION, identity, identity_attributes
from .importance import (IMPORTANCE, ImportanceRecord, MethodImportance, SubconceptImportance, read_importance,
                         write_importance)
from .labels import LABELS
from .layout import OPTIONAL_STAGES, STAGE_FOLDERS, STAGES, safe_filename, stage_path
from .probe import PROBE
from .run import RunFolder, StageScan, open_run
from .tree import ConceptNode, ConceptTree, concept_tree
from .runfiles import read_json, read_manifest, replace_folder, write_json, write_manifest, write_text_atomic

SPECS = {spec.stage: spec for spec in (ACTIVATIONS, CONCEPTS, IMPORTANCE, DICTIONARY, FVIZ)}
#: the run-level files that are not HDF5 stage files (a probe, the concept names)
RUN_FILE_SPECS = {spec.stage: spec for spec in (PROBE, LABELS)}

__all__ = [
    "ACTIVATIONS", "CONCEPTS", "IMPORTANCE", "FVIZ", "SPECS", "RUN_FILE_SPECS", "PROBE", "LABELS", "FORMAT_VERSION",
    "ActivationCache", "ActivationsWriter", "ImageTable", "RowTable",
    "ConceptsRecord", "ConceptsWriter", "read_concepts",
    "ImportanceRecord", "MethodImportance", "SubconceptImportance", "read_importance", "write_importance",
    "DICTIONARY", "DictionaryRecord", "read_dictionary", "write_dictionary",
    "FvizRecord", "FvizSubconcepts", "read_fviz", "write_fviz",
    "RunFolder", "StageScan", "open_run", "ConceptNode", "ConceptTree", "concept_tree",
    "STAGE_FOLDERS", "STAGES", "OPTIONAL_STAGES", "safe_filename", "stage_path", "config_hash", "file_sha256",
    "identity", "identity_attributes", "read_json", "write_json", "write_text_atomic", "read_manifest",
    "write_manifest", "replace_folder",
]
