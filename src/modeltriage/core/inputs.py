"""Checks on what callers send, shared by routing, answer checks and evaluation."""

from __future__ import annotations

from modeltriage.core.config import ModelSpec, RouterConfig
from modeltriage.errors import InputError


def check_text(text: object, max_bytes: int) -> str:
    """Reject what cannot be routed, with a message fit for the caller."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("text is not valid Unicode (it contains lone surrogates)") from None
    if not text.strip():
        raise InputError("text is empty")
    if size > max_bytes:
        raise InputError(
            f"text is {size} bytes, over the limit of {max_bytes} (limits.max_text_bytes)",
            too_large=True,
        )
    return text


def check_batch_bytes(texts: object, max_bytes: int) -> None:
    """Refuse a batch whose texts add up to more than ``max_bytes`` UTF-8 bytes
    (``limits.max_batch_bytes``): a count alone lets 256 long texts through."""
    if not isinstance(texts, (list, tuple)) or len(texts) < 2:
        return
    total = 0
    for text in texts:
        if isinstance(text, str):
            # Lone surrogates are counted as three bytes here and refused per text later.
            total += len(text.encode("utf-8", "surrogatepass"))
        if total > max_bytes:
            raise InputError(
                f"the batch's texts are over the limit of {max_bytes} bytes in all "
                "(limits.max_batch_bytes)",
                too_large=True,
            )


def check_answer_size(name: str, value: str, max_bytes: int) -> None:
    """An answer the escalation check may read: valid Unicode, at most ``max_bytes``."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError(f"{name} is not valid Unicode (lone surrogates)") from None
    if size > max_bytes:
        raise InputError(
            f"{name} is over the limit of {max_bytes} bytes (escalation.max_answer_bytes)",
            too_large=True,
        )


def check_model(config: RouterConfig, name: str, what: str | None = None) -> ModelSpec:
    """The model ``name`` of the config; an ``InputError`` naming the known models (and
    ``what`` asked for it) when the config defines no such model."""
    try:
        return config.model(name)
    except KeyError:
        known = ", ".join(m.name for m in config.models)
        where = "" if what is None else f"{what}: "
        raise InputError(f"{where}unknown model {name!r}; router.yaml defines {known}") from None
