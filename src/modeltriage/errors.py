"""Errors raised by modeltriage. Every one carries a message fit to show a user as is."""

from __future__ import annotations

from pathlib import Path


class ModelTriageError(Exception):
    """Base class: catch this to handle any modeltriage failure."""


class ConfigError(ModelTriageError):
    """An intent file or the router config is invalid; names the file and line."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        self.detail = message
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class IndexStateError(ModelTriageError):
    """Base for problems with the on-disk index."""


class IndexMissingError(IndexStateError):
    """No index has been built for these intents yet."""


class StaleIndexError(IndexStateError):
    """The index on disk was built from other exemplars or another encoder."""


class MissingDependencyError(ModelTriageError):
    """An optional dependency (an extra) is not installed."""

    def __init__(self, package: str, extra: str | None):
        self.package = package
        self.extra = extra
        target = package if extra is None else f"'modeltriage[{extra}]'"
        super().__init__(f"{package} is not installed; install it with: pip install {target}")


class InputError(ModelTriageError, ValueError):
    """The request text is unusable (empty, too long)."""

    def __init__(self, message: str, *, too_large: bool = False):
        self.too_large = too_large
        super().__init__(message)


class EvaluationError(ModelTriageError):
    """Labelled data cannot be evaluated as asked (no rows, nothing to tune on...)."""
