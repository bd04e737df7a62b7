"""``RouteOptions``: everything a caller may say about one routing request besides its
text. The library, the service and the CLI all pass this one object, so the list of
options is written once."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from modeltriage.errors import InputError

# The most any router.yaml may allow (the `le` of the `limits:` fields): the request
# models hold these, so a request is bounded before router.yaml is read; the configured
# limits themselves are checked in one place, core.inputs.check_options.
METADATA_KEYS_CEILING = 1024
METADATA_KEY_CHARS_CEILING = 256
METADATA_VALUE_BYTES_CEILING = 65_536
NAME_CHARS_CEILING = 1000
CHOICES_CEILING = 1024


def _short_value(value: str) -> str:
    """A metadata string: valid Unicode, at most METADATA_VALUE_BYTES_CEILING bytes."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (it contains a lone surrogate)") from None
    if size > METADATA_VALUE_BYTES_CEILING:
        raise ValueError(f"a metadata value has at most {METADATA_VALUE_BYTES_CEILING} UTF-8 bytes")
    return value


MetadataValue = (
    Annotated[StrictStr, AfterValidator(_short_value)]
    | Annotated[StrictInt, BeforeValidator(lambda v: fits_a_float(v))]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | StrictBool
    | None
)
MetadataKey = Annotated[StrictStr, Field(min_length=1, max_length=METADATA_KEY_CHARS_CEILING)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=METADATA_KEYS_CEILING,
        description="stored with the logged decision (tenant, conversation...): at most "
        "limits.max_metadata_keys keys (default 32) of limits.max_metadata_key_chars "
        "characters (default 64), each string value at most limits.max_metadata_value_bytes "
        "UTF-8 bytes (default 256)",
    ),
]


def fits_a_float(value: object) -> object:
    """A before-validator for a number field: a 400-digit integer would overflow the
    finiteness check (an OverflowError, not a validation error), so it is refused first,
    as the out-of-range number it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        raise ValueError("number too large")
    return value


Budget = Annotated[
    StrictFloat | StrictInt, BeforeValidator(fits_a_float), Field(gt=0, allow_inf_nan=False)
]


class CallerInput(BaseModel):
    """A model built from a library caller's keyword arguments: a bad value raises
    ``InputError`` naming the field, like every other bad input."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # What a field must be, in words, where pydantic's own message would be obscure.
    _must_be: ClassVar[dict[str, str]] = {}

    def __init__(self, **data: Any) -> None:
        # Request bodies are validated by FastAPI (model_validate: a 422 of its own); only
        # a library caller's keyword arguments come through here.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            got = first.get("input")
            must_be = self._must_be.get(where)
            if must_be is not None:
                raise InputError(f"{where} must be {must_be}, got {got!r}") from None
            raise InputError(f"{where}: {first['msg']}, got {got!r}") from None


class RouteOptions(CallerInput):
    """Budgets, the pipeline step, the conversation, metadata and ``explain``.

    Built by the caller (``RouteOptions(max_cost_usd=0.01)``): a bad value raises
    ``InputError`` naming the field. The HTTP request bodies extend this model, so the
    service accepts exactly these fields.
    """

    _must_be: ClassVar[dict[str, str]] = {
        "max_latency_ms": "a number greater than 0",
        "max_cost_usd": "a number greater than 0",
    }

    max_latency_ms: Budget | None = Field(
        default=None, description="only models whose typical_latency_ms is within it"
    )
    max_cost_usd: Budget | None = Field(
        default=None, description="only models whose estimated cost is within it"
    )
    step: StrictStr | None = Field(
        default=None,
        max_length=NAME_CHARS_CEILING,
        description="a pipeline step of router.yaml's `steps`",
    )
    conversation_id: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=NAME_CHARS_CEILING,
        description="with conversation.sticky: the conversation does not go down tiers",
    )
    metadata: Metadata | None = None
    explain: StrictBool = Field(default=False, description="include the nearest exemplars")


NO_OPTIONS = RouteOptions()
