"""The Ray Serve deployment (`modeltriage[ray]`): deploy/ray/serve.yaml on a local
single-node Ray bound to loopback, routed through Ray's HTTP proxy; 2 router replicas,
scaled down to 1; a clean shutdown with every decision logged and no Ray process left.

One Ray instance serves the whole module: starting it takes tens of seconds on two
shared cores. The fast test runs the fake encoder, named by $MODELTRIAGE_ENCODER_FACTORY
in the application's runtime_env (an encoder object cannot cross into a replica).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modeltriage import HashingEncoder, build_index
from modeltriage.cli.main import main
from modeltriage.errors import ConfigError, InputError
from modeltriage.http.app import ENCODER_FACTORY_ENV
from modeltriage.log.open import open_store
from modeltriage.log.urls import LOG_URL_ENV

from .conftest import REPO, SHIPPED_INTENTS

ray = pytest.importorskip("ray")
from ray import serve  # noqa: E402

from modeltriage.http import ray_run  # noqa: E402
from modeltriage.http.ray_app import APP_NAME, build_app  # noqa: E402

SERVE_YAML = REPO / "deploy" / "ray" / "serve.yaml"
RAYSERVICE_YAML = REPO / "deploy" / "kuberay" / "rayservice.yaml"
FAKE = "modeltriage.core.encoders:HashingEncoder"
SETTLE_TIMEOUT_S = 240.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes_mentioning(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (Ray's own, under its temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


@dataclass
class Cluster:
    port: int
    temp_dir: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, intents: Path, env: dict[str, str]) -> dict[str, Any]:
        """serve.yaml as shipped, on this cluster's proxy port, with ``env`` given to the
        application's replicas."""
        shipped = ray_run.read_serve_config(SERVE_YAML)
        config = ray_run.with_overrides(shipped, intents_dir=intents, port=self.port)
        config["applications"][0]["runtime_env"] = {"env_vars": env}
        return config


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # A short path of its own: Ray's socket paths must fit in 107 bytes, and the check
    # for leftover processes looks for it.
    temp_dir = Path(tempfile.mkdtemp(prefix="mt-ray-", dir="/tmp"))
    ray_run.start_local_ray(temp_dir, num_cpus=2, object_store_bytes=80 * 1024 * 1024)
    try:
        yield Cluster(_free_port(), temp_dir)
    finally:
        serve.shutdown()
        ray.shutdown()
        deadline = time.monotonic() + 60
        while _processes_mentioning(str(temp_dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftover = _processes_mentioning(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftover, f"Ray processes left running: {leftover}"


def _deploy(config: dict[str, Any]) -> None:
    ray_run.deploy(ray_run.checked(config, SERVE_YAML), SERVE_YAML, timeout_s=SETTLE_TIMEOUT_S)


def _replicas(deployment: str) -> int:
    app = serve.status().applications[APP_NAME]
    return int(app.deployments[deployment].replica_states.get("RUNNING", 0))


def _settle(deployment: str, want: int) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while _replicas(deployment) != want:
        assert time.monotonic() < deadline, serve.status()
        time.sleep(0.5)


def _fixed_replicas(config: dict[str, Any], count: int) -> dict[str, Any]:
    router = config["applications"][0]["deployments"][0]
    assert router["name"] == "Router"
    router.pop("autoscaling_config", None)
    router["num_replicas"] = count
    return config


def _route_many(base: str, texts: list[str]) -> list[str]:
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def send(chunk: list[str]) -> None:
        with httpx.Client(base_url=base, timeout=60.0) as client:
            for text in chunk:
                response = client.post("/route", json={"text": text})
                with lock:
                    if response.status_code == 200:
                        ids.append(response.json()["id"])
                    else:
                        errors.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=send, args=(texts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return ids


def test_two_replicas_scale_down_and_shut_down_with_every_decision_logged(
    cluster: Cluster, tiny_dir: Path, tmp_path: Path
) -> None:
    build_index(tiny_dir, HashingEncoder())
    log = tmp_path / "decisions.db"
    env = {ENCODER_FACTORY_ENV: FAKE, LOG_URL_ENV: str(log)}
    config = cluster.config(tiny_dir, env)
    _deploy(config)  # as shipped: autoscaling from one replica
    assert _replicas("Router") == 1
    first = httpx.post(f"{cluster.base}/route", json={"text": "refund my order"}, timeout=60)
    assert first.status_code == 200, first.text
    assert first.json()["intent"] == "refund"
    ids = [first.json()["id"]]

    _deploy(_fixed_replicas(config, 2))
    _settle("Router", 2)
    ids += _route_many(cluster.base, [f"refund my order number {n}" for n in range(16)])
    # Whichever replica answers, a decision just routed by the other can be looked up.
    for decision_id in ids[-4:]:
        assert httpx.get(f"{cluster.base}/decisions/{decision_id}", timeout=60).status_code == 200
    hostile = httpx.post(
        f"{cluster.base}/route",
        content=b'{"text": 1e999}',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert 400 <= hostile.status_code < 500

    _deploy(_fixed_replicas(config, 1))
    _settle("Router", 1)
    ids += _route_many(cluster.base, [f"when do you open {n}" for n in range(8)])

    serve.delete(APP_NAME)  # replicas stop; each flushes its decision log first
    store = open_store(str(log))
    try:
        logged = {entry.decision_id for entry in store.decisions()}
    finally:
        store.close()
    assert set(ids) <= logged


@pytest.mark.real
def test_the_real_encoder_deployment_routes_the_shipped_intents(
    cluster: Cluster, tmp_path: Path
) -> None:
    intents = tmp_path / "intents"
    shutil.copytree(
        SHIPPED_INTENTS, intents, ignore=shutil.ignore_patterns(".index", ".log*", "*.db*")
    )
    build_index(intents)  # router.yaml's encoder: ONNX MiniLM, real FAISS
    env = {ENCODER_FACTORY_ENV: "", LOG_URL_ENV: str(tmp_path / "decisions.db")}
    _deploy(cluster.config(intents, env))
    try:
        response = httpx.post(
            f"{cluster.base}/route",
            json={"text": "what time does your store open on saturday"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["intent"] == "store_hours"
    finally:
        serve.delete(APP_NAME)


def test_the_kuberay_manifest_embeds_serve_yaml() -> None:
    serve_yaml = yaml.safe_load(SERVE_YAML.read_text(encoding="utf-8"))
    ray_run.checked(serve_yaml, SERVE_YAML)  # Ray's own schema accepts it
    manifest = yaml.safe_load(RAYSERVICE_YAML.read_text(encoding="utf-8"))
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert embedded["applications"] == serve_yaml["applications"]
    cluster_spec = manifest["spec"]["rayClusterConfig"]
    assert cluster_spec["headGroupSpec"]["rayStartParams"]
    assert cluster_spec["workerGroupSpecs"][0]["maxReplicas"] >= 1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"intents_dirr": "intents"}, "args.intents_dirr"),
        ({"encoder_max_batch": 0}, "args.encoder_max_batch"),
        ({"encoder_max_batch": 10**12}, "args.encoder_max_batch"),
        ({"encoder_max_batch": "lots"}, "args.encoder_max_batch"),
        ({"encoder_batch_wait_ms": float("nan")}, "args.encoder_batch_wait_ms"),
        ({"encoder_batch_wait_ms": float("inf")}, "args.encoder_batch_wait_ms"),
        ({"intents_dir": ["a"]}, "args.intents_dir"),
    ],
)
def test_bad_application_args_are_one_line(args: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match) as raised:
        build_app(args)
    assert "\n" not in str(raised.value)


def test_an_intents_dir_without_router_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no router\.yaml"):
        build_app({"intents_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"no router\.yaml"):
        build_app({"intents_dir": "\ud800"})


def test_build_app_binds_the_router_over_the_encoder(tiny_dir: Path) -> None:
    app = build_app({"intents_dir": str(tiny_dir)})
    assert isinstance(app, serve.Application)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("applications: [\n  - name: x\n    bad: [\n", ":2: not valid YAML"),
        ("- just a list\n", "a mapping"),
        (
            "applications: [{name: x, import_path: modeltriage.http.ray_app:build_app,\n"
            "  deployments: [{name: Router, num_replicas: -1}]}]\n",
            "deployments.0.num_replicas",
        ),
        ("applications: [{name: x, import_path: some.module:app}]\n", "no application"),
        ("http_options: {port: lots}\napplications: []\n", "http_options.port"),
    ],
)
def test_a_broken_serve_yaml_is_one_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises((ConfigError, InputError), match=match) as raised:
        ray_run.checked(ray_run.read_serve_config(path), path)
    assert "\n" not in str(raised.value)


def test_serve_ray_with_a_missing_config_is_one_line(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--ray", "--ray-config", "/nowhere/serve.yaml", "--intents", str(tiny_dir)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == "modeltriage: error: /nowhere/serve.yaml: no such Ray Serve config file"


@pytest.mark.parametrize(
    ("extra", "match"),
    [(["--workers", "2"], "not --workers"), (["--watch"], "not available with --ray")],
)
def test_serve_ray_refuses_uvicorn_only_flags(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str
) -> None:
    assert main(["serve", "--ray", "--intents", str(tiny_dir), *extra]) == 1
    err = capsys.readouterr().err
    assert match in err
    assert err.count("\n") == 1


def test_serve_ray_without_ray_names_the_extra(tiny_dir: Path) -> None:
    # A fresh interpreter where `import ray` fails, as it does without the extra.
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from modeltriage.cli.main import main\n"
        f"sys.exit(main(['serve', '--ray', '--intents', {str(tiny_dir)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "modeltriage: error: ray is not installed; install it with: pip install 'modeltriage[ray]'"
    )


class _Response:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def result(self, timeout_s: float) -> Any:
        assert timeout_s > 0
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class _Handle:
    """Stands in for the encoder deployment's handle: `handle.encode.remote(texts)`."""

    def __init__(self, outcome: Any) -> None:
        self.encode = self
        self.outcome = outcome

    def remote(self, texts: list[str]) -> _Response:
        return _Response(self.outcome)


def test_the_handle_encoder_returns_float32_rows() -> None:
    from modeltriage.http.ray_app import HandleEncoder

    encoder = HandleEncoder(_Handle([[1.0, 0.0], [0.0, 1.0]]), "fake", 2)  # type: ignore[arg-type]
    vectors = encoder.encode(["a", "b"])
    assert vectors.dtype.name == "float32" and vectors.shape == (2, 2)
    assert (encoder.model_id, encoder.dim) == ("fake", 2)


@pytest.mark.parametrize(
    "failure",
    [TimeoutError("no answer"), ray.exceptions.RayError("replica died\ntraceback...")],
)
def test_an_encoder_deployment_that_does_not_answer_is_a_503(failure: Exception) -> None:
    from modeltriage.errors import OverloadedError
    from modeltriage.http.ray_app import HandleEncoder

    encoder = HandleEncoder(_Handle(failure), "fake", 2)  # type: ignore[arg-type]
    with pytest.raises(OverloadedError, match="encoder deployment did not answer") as raised:
        encoder.encode(["a"])
    assert "\n" not in str(raised.value)
    assert encoder.encode([]).shape == (0, 2)  # nothing to encode: no call at all
