"""Errors that the command line reports as one line and exit code 2.

Every user-facing error is a :class:`ConceptsError`, a ``ValueError``: Python callers can catch either, and the CLI
prints ``concepts: error: <message>`` without a traceback.
"""


class ConceptsError(ValueError):
    """A user-facing error: bad input, unknown model/layer/class, config mismatch.

    The CLI prints ``concepts: error: <message>`` and exits with code 2, never a traceback.
    """


class ConfigMismatchError(ConceptsError):
    """An artefact in the run folder was made with a different configuration."""


class SettingsError(ConceptsError):
    """A setting has a value outside what it allows (from a flag, a YAML key or a Python argument)."""


class ArtefactError(ConceptsError):
    """An artefact file is missing, damaged, from an unknown format version or not of the expected stage."""


class DataError(ConceptsError):
    """The data of one class cannot be processed as asked (fewer rows than concepts, constant rows ...); a stage
    skips that class with this reason and goes on."""


class ClassSkipped(ConceptsError):
    """One class cannot be processed (no readable image, degenerate data); the stage lists it and goes on."""
