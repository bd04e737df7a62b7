"""``modeltriage serve --ray``: what Ray's own ``serve run deploy/ray/serve.yaml`` does,
on a local single-node Ray, with the command line's intents directory, host and port.

The config file is read and checked against Ray's schema (``ServeDeploySchema``) before
Ray starts, so a missing or broken file is a one-line error; it is then deployed with the
same call ``serve run FILE`` makes (``ray.serve.scripts.run``; ray is pinned), and the
command waits until every application runs, or says why one failed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from modeltriage.errors import ConfigError, InputError, MissingDependencyError

try:
    import ray
    from pydantic import ValidationError
    from ray import serve
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema
except ImportError:  # pragma: no cover - exercised in a subprocess without ray
    raise MissingDependencyError("ray", "ray") from None

# Two shared cores: starting Ray and two deployments can take a minute or more.
DEPLOY_TIMEOUT_S = 300.0
IMPORT_PATH = "modeltriage.http.ray_app:build_app"


def read_serve_config(path: Path | str) -> dict[str, Any]:
    """serve.yaml as a mapping; a missing, unreadable or malformed file is one line."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: no such Ray Serve config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: cannot read it: {exc}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = None if mark is None else mark.line + 1
        raise ConfigError(f"not valid YAML: {exc.problem}", source, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source) from None
    if not isinstance(loaded, dict):
        raise ConfigError("a Ray Serve config is a mapping with `applications:`", source)
    return loaded


def with_overrides(
    config: dict[str, Any],
    *,
    intents_dir: Path | str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    """A copy of ``config`` with the intents directory given to the modeltriage
    application and the proxy's host and port replaced where given."""
    out = dict(config)
    http = dict(out.get("http_options") or {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    out["http_options"] = http
    apps = []
    for app in out.get("applications") or []:
        app = dict(app) if isinstance(app, dict) else app
        if intents_dir is not None and isinstance(app, dict) and _is_ours(app):
            app["args"] = {**(app.get("args") or {}), "intents_dir": str(intents_dir)}
        apps.append(app)
    out["applications"] = apps
    return out


def _is_ours(app: dict[str, Any]) -> bool:
    return app.get("import_path") == IMPORT_PATH


def checked(config: dict[str, Any], path: Path | str) -> ServeDeploySchema:
    """``config`` against Ray's schema; the first problem as a one-line ConfigError."""
    try:
        with warnings.catch_warnings():
            # Ray's schema validators serialise its DEFAULT sentinels: pydantic warns.
            warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
            schema = ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", path) from None
    if not any(app.import_path == IMPORT_PATH for app in schema.applications):
        raise ConfigError(f"no application has import_path {IMPORT_PATH}", path)
    return schema


def start_local_ray(
    temp_dir: Path | None = None,
    num_cpus: int | None = None,
    object_store_bytes: int | None = None,
) -> None:
    """A single-node Ray on this machine, its node address loopback, no dashboard."""
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=num_cpus,
        object_store_memory=object_store_bytes,
        _node_ip_address="127.0.0.1",
        _temp_dir=None if temp_dir is None else str(temp_dir),
        log_to_driver=False,
    )


def deploy(
    schema: ServeDeploySchema, path: Path | str, timeout_s: float = DEPLOY_TIMEOUT_S
) -> None:
    """Start Serve with the config's proxy settings (a no-op when it runs) and deploy
    its applications, as ``serve run FILE`` does; return once all run."""
    client = serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    client.deploy_apps(schema, _blocking=False)
    wait_running([app.name for app in schema.applications], path, timeout_s)


def wait_running(names: list[str], path: Path | str, timeout_s: float) -> None:
    """Wait until every named application is RUNNING; a failed one is a ConfigError
    naming the config file with the last line of Ray's reason."""
    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {name: apps[name] for name in names if name in apps}
        for name, app in states.items():
            if app.status == "DEPLOY_FAILED":
                raise ConfigError(f"application {name} failed: {_last_line(app.message)}", path)
        if len(states) == len(names) and all(a.status == "RUNNING" for a in states.values()):
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"applications not running after {timeout_s:.0f} s", path)
        time.sleep(0.5)


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line]
    return (errors or lines or ["no reason given"])[-1]


def serve_until_stopped(schema: ServeDeploySchema, path: Path | str) -> None:
    """``serve --ray``: start a local Ray, deploy, serve until SIGINT or SIGTERM, then
    shut Serve (each router replica flushes its decision log) and Ray down."""
    stop = threading.Event()
    start_local_ray()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        deploy(schema, path)
        http = schema.http_options
        print(
            f"modeltriage: Ray Serve on http://{http.host}:{http.port} (pid {os.getpid()}); "
            "Ctrl-C stops it",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]  # (ray leaves it unannotated)
        ray.shutdown()
