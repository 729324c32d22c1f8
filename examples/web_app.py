"""An asyncq pool inside a web app: HTTP requests submit work and await its result.

A small deployment API built with Starlette. The pool lives as long as the app: it starts
in the app's lifespan and, when the app shuts down, it drains, so every request that was
accepted gets its answer. Endpoints:

* ``POST /deploy/{service}?version=...`` submits a deploy job and awaits it: ``200`` with
  the job's result; ``502`` if the job finally failed (after the pool's retries; it is then
  in the dead letters); ``503`` with ``Retry-After`` when the pool is full. That last one
  is backpressure mapped to HTTP: ``submit_nowait`` raises ``asyncq.QueueFull`` instead of
  letting requests pile up in memory, and the client is told to come back later.
* ``GET /stats`` returns ``pool.stats()`` as JSON.
* ``GET /dead-letters`` lists the jobs that finally failed.

A client that disconnects while waiting does not cancel its job: awaiting a job never
cancels it.

Running this file does not start a server: it drives the app in-process through httpx2's
ASGI transport (lifespan included) and prints each request and response::

    python examples/web_app.py

To serve it for real, point any ASGI server at ``app``, e.g. ``uvicorn web_app:app`` from
the ``examples`` directory. ``tests/test_web_example.py`` tests the same app with
Starlette's ``TestClient``. Needs ``starlette`` and ``httpx2`` (the HTTP client Starlette's
``TestClient`` is built on).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import asyncq

DeployFn = Callable[..., Awaitable[str]]
SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


async def deploy(service: str, *, version: str) -> str:
    """Roll ``version`` out to ``service`` (simulated); legacy hosts cannot be reached."""
    await asyncio.sleep(0.02)
    if service.startswith("legacy-"):
        raise ConnectionError(f"{service}: host unreachable")
    return f"{service} now runs {version}"


def stats_json(stats: asyncq.Stats) -> dict[str, Any]:
    """A ``Stats`` snapshot as plain JSON."""
    return {
        "submitted": stats.submitted, "succeeded": stats.succeeded, "failed": stats.failed,
        "retried": stats.retried, "dead": stats.dead, "cancelled": stats.cancelled,
        "waiting": stats.waiting, "delayed": stats.delayed, "running": stats.running,
        "workers": stats.workers, "dead_letters": stats.dead_letters,
        "queue_wait_p95_ms": round(stats.queue_wait.p95 * 1000, 3),
        "run_time_p95_ms": round(stats.run_time.p95 * 1000, 3),
    }


def create_app(*, workers: int = 4, maxsize: int = 16, deploy_fn: DeployFn = deploy,
               retry: asyncq.Retry | None = None) -> Starlette:
    """The deployment API, with a pool of ``workers`` that holds at most ``maxsize`` jobs
    waiting; requests beyond that get ``503``."""
    policy = retry if retry is not None else asyncq.Retry(
        attempts=3, delay=0.01, retry_on=(ConnectionError, TimeoutError))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with asyncq.Pool(workers=workers, maxsize=maxsize, retry=policy,
                               timeout=10.0) as pool:
            app.state.pool = pool
            yield
        # leaving the block drained the pool: every accepted request has its answer

    async def post_deploy(request: Request) -> JSONResponse:
        pool: asyncq.Pool = request.app.state.pool
        service = request.path_params["service"]
        version = request.query_params.get("version", "latest")
        if not SERVICE_NAME.fullmatch(service):
            return JSONResponse({"error": f"invalid service name {service!r}"}, 400)
        try:
            job = pool.submit_nowait(deploy_fn, service, version=version)
        except asyncq.QueueFull:
            return JSONResponse({"error": "too many deploys in progress; retry later"}, 503,
                                headers={"Retry-After": "1"})
        except asyncq.PoolClosed:
            return JSONResponse({"error": "shutting down"}, 503)
        try:
            result = await job
        except asyncq.JobCancelled:  # the app is shutting down and gave up waiting for it
            return JSONResponse({"job_id": job.id, "error": "cancelled: shutting down"}, 503)
        except Exception as exc:  # the job's own error, after its retries
            return JSONResponse({"job_id": job.id, "error": f"{type(exc).__name__}: {exc}",
                                 "attempts": job.attempts}, 502)
        return JSONResponse({"job_id": job.id, "result": result, "attempts": job.attempts})

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse(stats_json(request.app.state.pool.stats()))

    async def get_dead_letters(request: Request) -> JSONResponse:
        return JSONResponse([
            {"job_id": letter.job_id, "args": list(letter.args), "kwargs": letter.kwargs,
             "attempts": letter.attempts, "reason": letter.reason, "error": str(letter.error)}
            for letter in request.app.state.pool.dead_letters
        ])

    return Starlette(
        routes=[
            Route("/deploy/{service}", post_deploy, methods=["POST"]),
            Route("/stats", get_stats, methods=["GET"]),
            Route("/dead-letters", get_dead_letters, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


app = create_app()


# -- running this file: the app exercised in-process -----------------------------------
BURST = 8


def show(response: httpx2.Response) -> None:
    """Print a request line and its response."""
    url = response.request.url
    target = f"{url.path}?{url.query.decode()}" if url.query else url.path
    retry_after = response.headers.get("retry-after")
    extra = f" (Retry-After: {retry_after})" if retry_after else ""
    print(f"{response.request.method} {target} -> {response.status_code}{extra} {response.text}")


async def main() -> None:
    demo = create_app(workers=2, maxsize=2)  # small, so that a burst fills it
    transport = httpx2.ASGITransport(app=demo)
    async with demo.router.lifespan_context(demo), httpx2.AsyncClient(
            transport=transport, base_url="http://deploy.local") as client:
        print("-- one deploy: the request awaits its job's result")
        ok = await client.post("/deploy/api", params={"version": "2.0"})
        show(ok)
        assert ok.status_code == 200
        assert ok.json()["result"] == "api now runs 2.0"

        print(f"\n-- a burst of {BURST} requests at once: 2 workers, at most 2 waiting")
        burst = await asyncio.gather(*(client.post(f"/deploy/web-{n}", params={"version": "2.0"})
                                       for n in range(1, BURST + 1)))
        for response in burst:
            show(response)
        accepted = [r for r in burst if r.status_code == 200]
        refused = [r for r in burst if r.status_code == 503]
        assert len(accepted) + len(refused) == BURST
        assert 2 <= len(accepted) <= 2 + 2, "the pool takes maxsize, at most maxsize + workers"
        assert refused
        assert all(r.headers["retry-after"] == "1" for r in refused)

        print(f"\n-- the {len(refused)} refused clients come back after Retry-After "
              "(scaled down here), one at a time")
        await asyncio.sleep(0.05)
        for response in refused:
            again = await client.post(response.request.url.path, params={"version": "2.0"})
            show(again)
            assert again.status_code == 200

        print("\n-- a deploy that keeps failing: retried, then 502 and a dead letter")
        failed = await client.post("/deploy/legacy-billing", params={"version": "2.0"})
        show(failed)
        assert failed.status_code == 502
        assert failed.json()["attempts"] == 3
        letters = await client.get("/dead-letters")
        show(letters)
        assert [d["args"] for d in letters.json()] == [["legacy-billing"]]

        print("\n-- the pool's statistics")
        stats = await client.get("/stats")
        show(stats)
        s = stats.json()
        assert s["submitted"] == 1 + BURST + 1
        assert s["submitted"] == (s["succeeded"] + s["dead"] + s["cancelled"] + s["waiting"]
                                  + s["delayed"] + s["running"])
        assert s["succeeded"] == 1 + BURST
        assert s["dead"] == 1
    print("\nok: results returned over HTTP, a full pool answered 503, the numbers add up")


if __name__ == "__main__":
    # The narrative tells the story; keep only errors from the pool's log.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    began = time.monotonic()
    asyncq.run(main())
    print(f"({time.monotonic() - began:.2f}s)")
