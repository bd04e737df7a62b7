"""Every error modeltriage raises, in one place. Each carries a message fit to show a user
as is; catch :class:`ModelTriageError` to handle them all.

The tree::

    ModelTriageError
    ├── ConfigError               an intent file or router.yaml is invalid (names file:line)
    ├── IndexStateError           the on-disk index cannot be used
    │   ├── IndexMissingError     no index built for these intents yet
    │   └── StaleIndexError       built from other exemplars or another encoder
    ├── AdapterError              the embedding adapter cannot be trained (no index is written)
    ├── MissingDependencyError    an optional extra is not installed
    ├── InputError (ValueError)   the request text is unusable (empty, too long)
    ├── LogStoreError             the decision log cannot be opened, migrated, read or written
    ├── UnknownDecisionError      a decision id that was never logged
    ├── InvalidEntryError (ValueError)
    │                             a log entry holds a value the log cannot store faithfully
    ├── EvaluationError           labelled data cannot be evaluated as asked
    └── OverloadedError           the service's request queue is full: retry later
"""

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
    """The request text is unusable (empty, too long). ``field``: the path of the request
    field at fault, when one is (``("metadata",)``), so the service can point at it."""

    def __init__(self, message: str, *, too_large: bool = False, field: tuple[str | int, ...] = ()):
        self.too_large = too_large
        self.field = field
        super().__init__(message)


class LogStoreError(ModelTriageError):
    """The decision log cannot be opened, migrated, read or written."""

    def __init__(self, message: str, url: str | None = None):
        self.url = url
        self.detail = message
        super().__init__(message if url is None else f"decision log {url}: {message}")


class UnknownDecisionError(ModelTriageError):
    """Feedback or a lookup names a decision id that was never logged."""

    def __init__(self, decision_id: str):
        self.decision_id = decision_id
        super().__init__(
            f"no logged decision has id {decision_id!r}: only decisions routed with the "
            "decision log on (and not with log=False) can be looked up or given feedback"
        )


class InvalidEntryError(ModelTriageError, ValueError):
    """A log or feedback entry holds a value the log cannot store faithfully."""


class EvaluationError(ModelTriageError):
    """Labelled data cannot be evaluated as asked (no rows, nothing to tune on...)."""


class OverloadedError(ModelTriageError):
    """The service's micro-batch queue is full; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int = 1):
        self.retry_after_s = retry_after_s
        super().__init__(message)


class AdapterError(ModelTriageError):
    """The embedding adapter could not be trained (too few intents, diverged, did not
    converge): the build stops and no index is written without it."""
