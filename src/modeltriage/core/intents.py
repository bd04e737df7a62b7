"""Intent files: the schema of one intent, and loading an intents directory (router.yaml
plus one intent per ``*.yaml`` file) with file:line errors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from modeltriage.core.config import (
    DIFFICULTIES,
    ROUTER_CONFIG_FILE,
    Difficulty,
    Name,
    RouterConfig,
    Strict,
)
from modeltriage.core.yamlsource import YamlDocument
from modeltriage.errors import ConfigError


class Exemplar(Strict):
    """One example request. ``difficulty`` overrides the intent's for this exemplar."""

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    difficulty: Difficulty | None = None


class IntentCascade(Strict):
    """An intent's own cascade plan: its model answers first, then is checked."""

    second_opinion: Name | None = Field(
        default=None,
        description="a model asked the same request too: escalate unless both answers agree "
        "(for closed-form answers: a choice, a number; free-form answers rarely agree)",
    )
    escalate_to: Name | None = Field(
        default=None, description="the model to escalate to; default: the cheapest flagship"
    )
    also_agree: list[Name] = Field(
        default_factory=list,
        max_length=8,
        description="further models asked the same request: escalate unless every one's "
        "answer agrees with the first (needs second_opinion)",
    )

    @model_validator(mode="after")
    def _also_agree_needs_a_second_opinion(self) -> IntentCascade:
        if self.also_agree and self.second_opinion is None:
            raise ValueError("also_agree needs second_opinion")
        return self


class Intent(Strict):
    name: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    ]
    description: str = ""
    difficulty: Difficulty
    model: Name | None = Field(default=None, description="specialised model; overrides the tier")
    cascade: IntentCascade | None = Field(
        default=None,
        description="a cascade plan for every confident match of this intent (e.g. learned "
        "from outcomes with answers): the routed model answers first and is checked",
    )
    exemplars: list[Exemplar] = Field(min_length=1)

    @field_validator("exemplars", mode="before")
    @classmethod
    def _plain_strings_are_exemplars(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"text": item} if isinstance(item, str) else item for item in value]
        return value

    def exemplar_difficulty(self, exemplar: Exemplar) -> Difficulty:
        return self.difficulty if exemplar.difficulty is None else exemplar.difficulty


def format_validation_error(doc: YamlDocument, exc: ValidationError) -> ConfigError:
    # A misspelt key also makes the real key "missing": report the typo first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "file"
    message = f"{where}: {first['msg']}"
    if first["type"] == "extra_forbidden":
        message = f"{where}: unknown key"
    elif first["type"] == "literal_error" and loc and loc[-1] == "difficulty":
        message = f"{where} must be one of {', '.join(DIFFICULTIES)}, got {first['input']!r}"
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return doc.error(f"{message}{suffix}", loc)


def load_router_config(path: Path) -> RouterConfig:
    doc = YamlDocument.read(path)
    if not isinstance(doc.data, dict):
        raise doc.error("expected a mapping of router settings")
    try:
        config = RouterConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise format_validation_error(doc, exc) from None
    problems = config.problems()
    if problems:
        loc, message = problems[0]
        raise doc.error(message, loc)
    return config


def load_intent_file(path: Path) -> tuple[Intent, YamlDocument]:
    doc = YamlDocument.read(path)
    if not isinstance(doc.data, dict):
        raise doc.error("expected a mapping with name, difficulty and exemplars")
    try:
        intent = Intent.model_validate(doc.data)
    except ValidationError as exc:
        raise format_validation_error(doc, exc) from None
    return intent, doc


class IntentSet(BaseModel):
    """A validated router config with its intents, as loaded from an intents directory."""

    model_config = ConfigDict(frozen=True)

    config: RouterConfig
    intents: tuple[Intent, ...]
    source: Path | None = None

    @property
    def index_path(self) -> Path:
        base = Path(".") if self.source is None else self.source
        return base / self.config.index_dir


def _intent_error(
    intent: Intent, doc: YamlDocument | None, message: str, loc: tuple[str | int, ...]
) -> ConfigError:
    if doc is None:
        return ConfigError(f"intent {intent.name!r}: {message}")
    return doc.error(message, loc)


def validate_intents(
    config: RouterConfig, intents: Iterable[tuple[Intent, YamlDocument | None]]
) -> tuple[Intent, ...]:
    """Check intents against each other and the config; raise on the first problem."""
    model_names = {m.name for m in config.models}
    first_seen: dict[str, YamlDocument | None] = {}
    result: list[Intent] = []
    for intent, doc in intents:
        if intent.name in first_seen:
            other = first_seen[intent.name]
            elsewhere = "" if other is None else f" (also in {other.path})"
            message = f"duplicate intent name {intent.name!r}{elsewhere}"
            raise _intent_error(intent, doc, message, ("name",))
        first_seen[intent.name] = doc
        if intent.model is not None and intent.model not in model_names:
            message = f"unknown model {intent.model!r}; router.yaml defines {sorted(model_names)}"
            raise _intent_error(intent, doc, message, ("model",))
        plan = intent.cascade
        named_in_plan: list[tuple[str | None, tuple[str | int, ...]]] = []
        if plan is not None:
            named_in_plan = [(plan.second_opinion, ("second_opinion",))]
            named_in_plan.append((plan.escalate_to, ("escalate_to",)))
            named_in_plan += [(m, ("also_agree", i)) for i, m in enumerate(plan.also_agree)]
        for named, where in named_in_plan:
            if named is not None and named not in model_names:
                message = f"unknown model {named!r}; router.yaml defines {sorted(model_names)}"
                raise _intent_error(intent, doc, message, ("cascade", *where))
        texts: dict[str, int] = {}
        for i, exemplar in enumerate(intent.exemplars):
            key = exemplar.text.casefold()
            if key in texts:
                message = f"exemplar {i} repeats exemplar {texts[key]}: {exemplar.text!r}"
                raise _intent_error(intent, doc, message, ("exemplars", i))
            texts[key] = i
        result.append(intent)
    if not result:
        raise ConfigError("no intents defined")
    return tuple(sorted(result, key=lambda it: it.name))


def load_intents(directory: Path | str) -> IntentSet:
    """Load ``router.yaml`` and every other ``*.yaml``/``*.yml`` file in ``directory``."""
    return load_intent_documents(directory)[0]


def load_intent_documents(directory: Path | str) -> tuple[IntentSet, dict[str, YamlDocument]]:
    """:func:`load_intents`, with each intent's parsed file (by intent name), for tools
    that point at an exemplar's file:line (`modeltriage lint`)."""
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError("intents directory not found", root)
    config_path = root / ROUTER_CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"no {ROUTER_CONFIG_FILE}: the router config (models, tiers, thresholds) is missing",
            root,
        )
    config = load_router_config(config_path)
    files = sorted(
        p
        for p in root.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name != ROUTER_CONFIG_FILE and p.is_file()
    )
    if not files:
        raise ConfigError("no intent files (*.yaml) found", root)
    loaded = [load_intent_file(p) for p in files]
    intents = validate_intents(config, loaded)
    step_problems = config.step_problems(intent.name for intent in intents)
    if step_problems:
        loc, message = step_problems[0]
        raise YamlDocument.read(config_path).error(message, loc)
    documents = {intent.name: doc for intent, doc in loaded}
    return IntentSet(config=config, intents=intents, source=root), documents
