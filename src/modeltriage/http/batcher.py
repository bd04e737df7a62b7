"""Micro-batching for the service: requests that arrive together are routed together, in
one encoder call and one index search, off the event loop.

The first request of a batch waits at most ``wait_s`` for others (or until ``max_batch``
texts are in); a lone request therefore pays at most that wait. While a batch is being
routed in its worker thread, new requests queue up and form the next batch. The queue is
bounded: past ``queue_size`` waiting texts, a request is refused with an OverloadedError
(503 with Retry-After) instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modeltriage.core.decision import Decision
from modeltriage.core.options import RouteOptions
from modeltriage.errors import InputError, OverloadedError

Request = tuple[str, RouteOptions]
RouteMany = Callable[[Sequence[Request]], Sequence[Decision | InputError]]


@dataclass
class _Job:
    """One caller's requests (one for /route, several for /route/batch), kept together."""

    requests: list[Request]
    future: asyncio.Future[list[Decision | InputError]] = field(repr=False)


class MicroBatcher:
    """Gathers concurrent requests into calls of ``route_many`` (``Router.route_many``).

    Owned by the app: created and started in its lifespan, closed when it ends."""

    def __init__(
        self, route_many: RouteMany, *, wait_s: float, max_batch: int, queue_size: int
    ) -> None:
        self._route_many = route_many
        self._wait_s = wait_s
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.routed = 0

    @property
    def queued(self) -> int:
        """Texts waiting for a batch."""
        return self._queued

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop taking batches; requests still queued are refused."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(OverloadedError("the service is shutting down"))
        self._queued = 0

    async def route(self, requests: Sequence[Request]) -> list[Decision | InputError]:
        """Each request's decision, or the InputError that refused it, in order."""
        if self._task is None:
            raise RuntimeError("the micro-batcher is not started")
        if self._queued + len(requests) > self._queue_size and self._queued > 0:
            raise OverloadedError(
                f"{self._queued} texts are waiting to be routed (serving.queue_size "
                f"{self._queue_size}); retry shortly",
                retry_after_s=1,
            )
        future: asyncio.Future[list[Decision | InputError]] = (
            asyncio.get_running_loop().create_future()
        )
        self._jobs.append(_Job(list(requests), future))
        self._queued += len(requests)
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._jobs:
                self._arrived.clear()
                await self._arrived.wait()
            if self._wait_s > 0 and self._queued < self._max_batch:
                await self._gather()
            jobs = self._take()
            await self._serve(jobs)

    async def _gather(self) -> None:
        """Wait up to ``wait_s`` from now for the batch to fill."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while self._queued < self._max_batch:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def _take(self) -> list[_Job]:
        """Whole jobs from the front of the queue, up to ``max_batch`` texts (a job larger
        than that goes alone: a /route/batch request is never split)."""
        jobs: list[_Job] = []
        taken = 0
        while self._jobs:
            size = len(self._jobs[0].requests)
            if jobs and taken + size > self._max_batch:
                break
            jobs.append(self._jobs.popleft())
            taken += size
        self._queued -= taken
        return jobs

    async def _serve(self, jobs: list[_Job]) -> None:
        live = [job for job in jobs if not job.future.done()]  # a client may have gone
        if not live:
            return
        requests = [r for job in live for r in job.requests]
        try:
            results = await asyncio.to_thread(self._route_many, requests)
        except Exception as exc:  # the whole call failed: every caller in it gets the error
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.batches += 1
        self.routed += len(requests)
        start = 0
        for job in live:
            end = start + len(job.requests)
            if not job.future.done():
                job.future.set_result(list(results[start:end]))
            start = end
