import subprocess
import sys

import modeltriage


def test_all_is_the_public_api() -> None:
    assert sorted(modeltriage.__all__) == sorted(
        [
            "ConfigError",
            "Decision",
            "Encoder",
            "HashingEncoder",
            "IndexMissingError",
            "IndexStateError",
            "InputError",
            "IntentSet",
            "Message",
            "MissingDependencyError",
            "ModelTriageError",
            "Neighbour",
            "Router",
            "RouterConfig",
            "SentenceTransformerEncoder",
            "StaleIndexError",
            "__version__",
            "build_index",
            "load_intents",
        ]
    )
    for name in modeltriage.__all__:
        assert hasattr(modeltriage, name), name


def test_import_is_cheap() -> None:
    code = (
        "import sys, modeltriage\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'fastapi', 'transformers')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_share_a_base() -> None:
    for name in ("ConfigError", "IndexMissingError", "StaleIndexError", "InputError"):
        assert issubclass(getattr(modeltriage, name), modeltriage.ModelTriageError)
