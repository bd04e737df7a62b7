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

MAX_METADATA_KEYS = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_BYTES = 256


def _short_value(value: str) -> str:
    """A metadata string of at most MAX_METADATA_VALUE_BYTES UTF-8 bytes."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (it contains a lone surrogate)") from None
    if size > MAX_METADATA_VALUE_BYTES:
        raise ValueError(f"a metadata value has at most {MAX_METADATA_VALUE_BYTES} UTF-8 bytes")
    return value


MetadataValue = (
    Annotated[StrictStr, AfterValidator(_short_value)]
    | Annotated[StrictInt, BeforeValidator(lambda v: fits_a_float(v))]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | StrictBool
    | None
)
MetadataKey = Annotated[StrictStr, Field(min_length=1, max_length=MAX_METADATA_KEY_CHARS)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=MAX_METADATA_KEYS,
        description=f"stored with the logged decision (tenant, conversation...): at most "
        f"{MAX_METADATA_KEYS} keys of {MAX_METADATA_KEY_CHARS} characters, each string value "
        f"at most {MAX_METADATA_VALUE_BYTES} UTF-8 bytes",
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
        default=None, max_length=200, description="a pipeline step of router.yaml's `steps`"
    )
    conversation_id: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="with conversation.sticky: the conversation does not go down tiers",
    )
    metadata: Metadata | None = None
    explain: StrictBool = Field(default=False, description="include the nearest exemplars")


NO_OPTIONS = RouteOptions()
