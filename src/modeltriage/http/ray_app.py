"""The service as a Ray Serve application (the ``ray`` extra): ``build_app`` is what
``deploy/ray/serve.yaml`` names in its ``import_path``.

Two deployments:

- ``Encoder`` holds the encoder router.yaml names (or ``$MODELTRIAGE_ENCODER_FACTORY``'s)
  and encodes with ``@serve.batch``: the texts of concurrent calls, from every router
  replica, go through the model in one call.
- ``Router`` is the FastAPI app of :func:`~modeltriage.http.app.create_app` behind
  ``@serve.ingress``, loading the built index read-only (it never builds: N replicas would
  race) with a :class:`HandleEncoder` in place of a local encoder. Replicas share the
  decision log as ``serve --workers N`` workers do.

Both autoscale on ongoing requests (the ``autoscaling_config`` of serve.yaml). API keys,
CORS origins, the log format and the log URL come from the same environment variables as
``serve --workers N``; the intents directory from the ``intents_dir`` argument, else
``$MODELTRIAGE_SERVE_INTENTS``, else ``intents``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeltriage.core.encoders import Encoder, Vectors
from modeltriage.core.intents import load_intents
from modeltriage.errors import ConfigError, InputError, MissingDependencyError, OverloadedError
from modeltriage.loading import encoder_for

try:
    from ray import serve
    from ray.exceptions import RayError
    from ray.serve.exceptions import RayServeException
    from ray.serve.handle import DeploymentHandle
except ImportError:  # pragma: no cover - exercised in a subprocess without ray
    raise MissingDependencyError("ray", "ray") from None

from fastapi import FastAPI

from modeltriage.http.app import INTENTS_ENV, create_app, encoder_from_env, samples_dir_from_env
from modeltriage.http.auth import CORS_ENV
from modeltriage.http.observe import LOG_FORMAT_ENV, json_logging

APP_NAME = "modeltriage"
# How long a router replica waits for the encoder deployment before answering 503.
ENCODE_TIMEOUT_S = 30.0


class RayAppArgs(BaseModel):
    """The ``args:`` of serve.yaml's application: checked strictly, as router.yaml is."""

    model_config = ConfigDict(extra="forbid")

    intents_dir: str | None = None
    # Calls (each a router replica's micro-batch) the encoder gathers into one model call.
    encoder_max_batch: int = Field(default=16, ge=1, le=1024)
    encoder_batch_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0, allow_inf_nan=False)


class EncoderDeployment:
    """The encoder, one per replica, behind ``@serve.batch``."""

    def __init__(self, intents_dir: str, max_batch: int, wait_ms: float) -> None:
        found = encoder_from_env()
        self._encoder: Encoder = encoder_for(load_intents(intents_dir)) if found is None else found
        # serve.yaml's settings replace the decorator's defaults (Ray's documented way).
        batched = cast(Any, self._encode_batch)
        batched.set_max_batch_size(max_batch)
        batched.set_batch_wait_timeout_s(wait_ms / 1000)

    def describe(self) -> tuple[str, int]:
        """What the router replicas check the index's manifest against."""
        return self._encoder.model_id, self._encoder.dim

    async def encode(self, texts: list[str]) -> Vectors:
        vectors: Vectors = await self._encode_batch(texts)
        return vectors

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _encode_batch(self, calls: list[list[str]]) -> list[Vectors]:
        texts = [text for call in calls for text in call]
        # In a thread: the replica's event loop keeps taking calls (the next batch) and
        # answering Ray's health checks while the model runs.
        vectors = await asyncio.to_thread(self._encoder.encode, texts)
        out: list[Vectors] = []
        start = 0
        for call in calls:
            out.append(vectors[start : start + len(call)])
            start += len(call)
        return out


class HandleEncoder:
    """The :class:`~modeltriage.core.encoders.Encoder` protocol over the encoder
    deployment's handle. ``encode`` blocks, so it must run off the event loop: the
    router calls it from the micro-batcher's worker thread."""

    def __init__(self, handle: DeploymentHandle[Any], model_id: str, dim: int) -> None:
        self._handle = handle
        self._model_id = model_id
        self._dim = dim

    @classmethod
    async def connect(cls, handle: DeploymentHandle[Any]) -> HandleEncoder:
        model_id, dim = await handle.describe.remote()
        return cls(handle, str(model_id), int(dim))

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        try:
            vectors = self._handle.encode.remote(list(texts)).result(timeout_s=ENCODE_TIMEOUT_S)
        except (TimeoutError, RayError, RayServeException) as exc:
            # Slow, overloaded, restarting or failed: a 503 the client may retry, never a
            # 500. Ray's message is many lines; its first names the cause.
            cause = str(exc).strip().splitlines()[:1] or [type(exc).__name__]
            raise OverloadedError(f"the encoder deployment did not answer: {cause[0]}") from None
        return np.ascontiguousarray(vectors, dtype=np.float32)


class RouterIngress:
    """A router replica: the FastAPI app of ``create_app`` over the encoder deployment.
    Ray calls ``__serve_build_asgi_app__`` after the constructor, then runs the app's
    lifespan (loading the index), and its shutdown when the replica stops."""

    def __init__(self, encoder: DeploymentHandle[Any], intents_dir: str) -> None:
        self._handle = encoder
        self._intents_dir = intents_dir

    async def __serve_build_asgi_app__(self) -> FastAPI:
        encoder = await HandleEncoder.connect(self._handle)
        if os.environ.get(LOG_FORMAT_ENV) == "json":
            json_logging()
        origins = [o.strip() for o in os.environ.get(CORS_ENV, "").split(",")]
        # Replicas are peers sharing one decision log, as `serve --workers N` workers are.
        return create_app(
            self._intents_dir,
            encoder=encoder,
            peer_workers=True,
            cors_origins=[o for o in origins if o],
            samples_dir=samples_dir_from_env(),
        )


ENCODER = serve.deployment(name="Encoder", max_ongoing_requests=64)(EncoderDeployment)
ROUTER = serve.deployment(name="Router", max_ongoing_requests=64)(serve.ingress()(RouterIngress))


def app_args(args: dict[str, Any]) -> RayAppArgs:
    """serve.yaml's ``args``, checked; a one-line InputError names the bad field."""
    try:
        return RayAppArgs.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "args"
        raise InputError(f"serve.yaml args.{where}: {first['msg']}") from None


def intents_dir_of(settings: RayAppArgs) -> Path:
    """The intents directory (argument, else ``$MODELTRIAGE_SERVE_INTENTS``, else
    ``intents``), absolute: replicas may start in another directory."""
    chosen = settings.intents_dir or os.environ.get(INTENTS_ENV) or "intents"
    try:
        directory = Path(chosen).resolve()
        found = (directory / "router.yaml").is_file()
    except (OSError, ValueError):  # a lone surrogate or NUL: no such directory
        found = False
    if not found:
        raise ConfigError("no router.yaml here: not an intents directory", repr(chosen))
    return directory


def build_app(args: dict[str, Any]) -> serve.Application:
    """The application builder serve.yaml's ``import_path`` names. Deployment options
    (replicas, autoscaling, CPUs) come from serve.yaml's ``deployments:``."""
    settings = app_args(args)
    directory = str(intents_dir_of(settings))
    encoder = ENCODER.bind(directory, settings.encoder_max_batch, settings.encoder_batch_wait_ms)
    return ROUTER.bind(encoder, directory)
