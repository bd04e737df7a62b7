import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import modeltriage
import modeltriage.router


def test_all_is_the_public_api() -> None:
    assert sorted(modeltriage.__all__) == sorted(
        [
            "AdapterError",
            "Answer",
            "CacheStats",
            "CascadePlan",
            "ConfigError",
            "Decision",
            "DecisionLogger",
            "Encoder",
            "Escalation",
            "EvaluationError",
            "EventEntry",
            "Failover",
            "FeedbackEntry",
            "HashingEncoder",
            "IndexMissingError",
            "IndexStateError",
            "InputError",
            "IntentSet",
            "InvalidEntryError",
            "LogEntry",
            "LogStore",
            "LogStoreError",
            "Manifest",
            "MemoryStore",
            "Message",
            "MissingDependencyError",
            "ModelTriageError",
            "OverloadedError",
            "Neighbour",
            "OnnxEncoder",
            "OosScore",
            "RouteOptions",
            "Router",
            "RouterConfig",
            "SentenceTransformerEncoder",
            "StaleIndexError",
            "UnknownDecisionError",
            "__version__",
            "build_index",
            "load_intents",
        ]
    )
    for name in modeltriage.__all__:
        assert hasattr(modeltriage, name), name


def _package_classes(annotation: object) -> set[type]:
    """The modeltriage classes named anywhere in a type annotation."""
    found: set[type] = set()
    if isinstance(annotation, type) and annotation.__module__.startswith("modeltriage"):
        found.add(annotation)
    for arg in typing.get_args(annotation):
        found |= _package_classes(arg)
    return found


def test_every_type_the_router_takes_or_returns_is_exported() -> None:
    exported = {getattr(modeltriage, name) for name in modeltriage.__all__}
    missing = set()
    for name, member in inspect.getmembers(modeltriage.Router):
        if name.startswith("_") and name != "__enter__":
            continue
        function = member.fget if isinstance(member, property) else member
        function = getattr(function, "__func__", function)
        if not callable(function):
            continue
        hints = typing.get_type_hints(function, vars(sys.modules[modeltriage.router.__name__]))
        for annotation in hints.values():
            missing |= {c.__name__ for c in _package_classes(annotation) - exported}
    assert missing == set()


def test_every_error_lives_in_errors_py_and_is_exported() -> None:
    for module_path in Path(modeltriage.__file__).parent.rglob("*.py"):
        if module_path.name == "__main__.py":  # importing it runs the CLI
            continue
        name = ".".join(
            module_path.relative_to(Path(modeltriage.__file__).parents[1]).with_suffix("").parts
        )
        module = importlib.import_module(name.removesuffix(".__init__"))
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, modeltriage.ModelTriageError)
                and value.__module__ == module.__name__
            ):
                assert module.__name__ == "modeltriage.errors", value
                assert value.__name__ in modeltriage.__all__, value


def test_the_version_is_the_package_metadata() -> None:
    assert modeltriage.__version__ == importlib.metadata.version("modeltriage")


def test_import_is_cheap() -> None:
    code = (
        "import sys, modeltriage\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'fastapi', 'transformers', 'onnxruntime', 'onnx', 'tokenizers', 'ray')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_share_a_base() -> None:
    for name in ("ConfigError", "IndexMissingError", "StaleIndexError", "InputError"):
        assert issubclass(getattr(modeltriage, name), modeltriage.ModelTriageError)
