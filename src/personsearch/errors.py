"""Errors raised on bad user input. Each names the file (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class PersonSearchError(Exception):
    """Base class for every error the library raises on bad input. The CLI prints these
    without a traceback and exits with status 2."""


class DatasetError(PersonSearchError):
    """A dataset file is missing, unreadable or malformed.

    ``DatasetError(path, "problem")`` renders as ``path: problem``.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ConfigError(PersonSearchError):
    """A configuration key is unknown, has the wrong type, or a value is out of range."""


class ResultsFileError(PersonSearchError):
    """A results .npz file does not fit the dataset it is evaluated against."""


class CheckpointError(PersonSearchError):
    """A checkpoint file is missing, corrupt, or was written by an incompatible model."""


class IndexError_(PersonSearchError):
    """A search index is missing, corrupt, or was built by a different model."""
