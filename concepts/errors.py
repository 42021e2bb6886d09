"""Errors that the command line reports as one line and exit code 2."""


class ConceptsError(ValueError):
    """A user-facing error: bad input, unknown model/layer/class, config mismatch.

    The CLI prints ``concepts: error: <message>`` and exits with code 2, never a traceback.
    """


class ConfigMismatchError(ConceptsError):
    """An artefact in the run folder was made with a different configuration."""
