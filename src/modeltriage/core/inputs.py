"""Checks on what callers send, shared by routing, answer checks and evaluation.

The configurable bounds of a request (router.yaml's ``limits:``: metadata, choices, name
lengths) are checked here and nowhere else; the request models only hold the ceilings no
configuration may pass (``core.options``)."""

from __future__ import annotations

from collections.abc import Sized

from modeltriage.core.config import Limits, ModelSpec, RouterConfig
from modeltriage.core.options import RouteOptions
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


def check_name(value: str | None, limits: Limits, field: str) -> None:
    """A name a request gives (a model, a step, a conversation id): at most
    ``limits.max_name_chars`` characters."""
    if value is not None and len(value) > limits.max_name_chars:
        raise InputError(
            f"{field} has {len(value)} characters, over the limit of {limits.max_name_chars} "
            "(limits.max_name_chars)",
            field=(field,),
        )


def check_options(options: RouteOptions, limits: Limits) -> None:
    """The options of a routing request within router.yaml's ``limits``: names and
    metadata (its keys, their length, the bytes of each string value)."""
    check_name(options.step, limits, "step")
    check_name(options.conversation_id, limits, "conversation_id")
    metadata = options.metadata
    if not metadata:
        return
    if len(metadata) > limits.max_metadata_keys:
        raise InputError(
            f"metadata has {len(metadata)} keys, over the limit of {limits.max_metadata_keys} "
            "(limits.max_metadata_keys)",
            field=("metadata",),
        )
    for key, value in metadata.items():
        if len(key) > limits.max_metadata_key_chars:
            raise InputError(
                f"a metadata key has {len(key)} characters, over the limit of "
                f"{limits.max_metadata_key_chars} (limits.max_metadata_key_chars)",
                field=("metadata",),
            )
        # RouteOptions has refused lone surrogates already: the encoding cannot fail.
        size = len(value.encode("utf-8")) if isinstance(value, str) else 0
        if size > limits.max_metadata_value_bytes:
            raise InputError(
                f"a metadata value has {size} UTF-8 bytes, over the limit of "
                f"{limits.max_metadata_value_bytes} (limits.max_metadata_value_bytes)",
                field=("metadata", key),
            )


def check_choices(choices: Sized | None, limits: Limits) -> None:
    """An answer check's multiple-choice options: at most ``limits.max_choices``."""
    if choices is not None and len(choices) > limits.max_choices:
        raise InputError(
            f"choices has {len(choices)} options, over the limit of {limits.max_choices} "
            "(limits.max_choices)",
            field=("choices",),
        )
