from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, Router, SentenceTransformerEncoder, load_intents
from modeltriage.http.app import create_app
from modeltriage.http.auth import ApiKeys

REPO = Path(__file__).resolve().parent.parent
SHIPPED_INTENTS = REPO / "intents"

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROUTER_YAML = """\
tiers: [small, mid, flagship]
models:
  - {name: small-a, tier: small, input_usd_per_mtok: 0.10, output_usd_per_mtok: 0.40}
  - {name: small-b, tier: small, input_usd_per_mtok: 0.20, output_usd_per_mtok: 0.80}
  - {name: mid-a, tier: mid, input_usd_per_mtok: 2.0, output_usd_per_mtok: 8.0}
  - {name: coder, tier: mid, input_usd_per_mtok: 0.3, output_usd_per_mtok: 0.9, specialised: true}
  - {name: big-a, tier: flagship, input_usd_per_mtok: 15.0, output_usd_per_mtok: 60.0}
thresholds:
  margin: 0.02
  min_similarity: 0.2
scoring: {top_k: 10, aggregation: max}  # margins above are cosine gaps
adapter: {enabled: false}  # raw cosines: the similarities tests assert; test_adapter turns it on
out_of_scope: {calibrate: false}  # min_similarity alone; test_out_of_scope calibrates
"""

TORCH_BACKEND = "encoder: {backend: torch}\n"

TINY_INTENTS = {
    "hours.yaml": """\
        name: hours
        difficulty: easy
        exemplars:
          - what are your opening hours
          - when do you open on sunday
          - what time do you close today
        """,
    "refund.yaml": """\
        name: refund
        difficulty: moderate
        exemplars:
          - I want a refund for my broken order
          - how do I get my money back for a damaged item
          - refund my purchase please
        """,
    "code.yaml": """\
        name: code
        difficulty: hard
        model: coder
        exemplars:
          - my python script throws a KeyError traceback
          - debug this javascript promise that never resolves
          - text: what is a for loop in python
            difficulty: easy
        """,
}


def write_intents(directory: Path, files: dict[str, str], router_yaml: str = ROUTER_YAML) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "router.yaml").write_text(router_yaml, encoding="utf-8")
    for name, body in files.items():
        (directory / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return directory


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    # The fakes' ids read as the torch backend's; `check` compares it with router.yaml's.
    return write_intents(tmp_path / "intents", TINY_INTENTS, ROUTER_YAML + TORCH_BACKEND)


@pytest.fixture
def make_intents(tmp_path: Path) -> Callable[..., Path]:
    """Write an intents directory from {file: yaml} and return its path."""

    def make(files: dict[str, str], router_yaml: str = ROUTER_YAML) -> Path:
        return write_intents(tmp_path / "custom", files, router_yaml)

    return make


@pytest.fixture
def fake_encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture
def fake_router(tiny_dir: Path, fake_encoder: HashingEncoder) -> Router:
    return Router.in_memory(load_intents(tiny_dir), fake_encoder, exact_numpy=True)


@pytest.fixture(scope="session")
def real_encoder() -> SentenceTransformerEncoder:
    """The real all-MiniLM-L6-v2, loaded once for the whole session."""
    return SentenceTransformerEncoder()


@pytest.fixture(scope="session")
def shipped_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped intents without any index, so tests never touch the repo's."""
    target = tmp_path_factory.mktemp("shipped") / "intents"
    shutil.copytree(
        SHIPPED_INTENTS, target, ignore=shutil.ignore_patterns(".index", ".log", ".log-spool.jsonl")
    )
    # shipped_router builds this copy's index with the torch encoder (the reference), so
    # commands run on the copy must load that backend too.
    with (target / "router.yaml").open("a", encoding="utf-8") as config:
        config.write("\n" + TORCH_BACKEND)
    return target


@pytest.fixture(scope="session")
def shipped_router(shipped_copy: Path, real_encoder: SentenceTransformerEncoder) -> Router:
    """The shipped intents through the real encoder and a real FAISS index saved on disk."""
    return Router.load(shipped_copy, encoder=real_encoder, build_if_needed=True)


Serve = Callable[[Router], TestClient]


# The keys of the `serve` fixture: admin endpoints on, route endpoints open.
ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
TEST_KEYS = ApiKeys(admin=(ADMIN_KEY,))


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Serve a router in-process (lifespan included, no socket): ``serve(router)`` gives a
    TestClient, closed at the end of the test. The caller keeps owning the router. The
    app has an admin key (``ADMIN_KEY``), which the client sends with every request; no
    route key (route endpoints are open)."""
    with ExitStack() as clients:
        yield lambda router: clients.enter_context(
            TestClient(create_app(router=router, keys=TEST_KEYS), headers=ADMIN)
        )
