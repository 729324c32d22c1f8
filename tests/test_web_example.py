"""The web-app example (examples/web_app.py), tested through Starlette's TestClient.

Each test runs the app on asyncio's default loop and on uvloop. The TestClient runs the
app's lifespan, so the pool starts and drains with the app, as it would under a server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import asyncq
from tests.conftest import LOOP_FACTORIES

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "web_app.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asyncq_example_web_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


web_app = _load_example()


@pytest.fixture(params=list(LOOP_FACTORIES), ids=list(LOOP_FACTORIES))
def serve(request: pytest.FixtureRequest) -> Callable[[Starlette], TestClient]:
    """Build a TestClient for an app, running it on the parametrised event loop."""
    factory = LOOP_FACTORIES[request.param]

    def client_for(app: Starlette) -> TestClient:
        return TestClient(app, backend_options={"loop_factory": factory})

    return client_for


def wait_for_stats(client: TestClient, **expected: int) -> dict[str, Any]:
    """Poll ``GET /stats`` until the given fields have the given values."""
    deadline = time.monotonic() + 5.0
    while True:
        stats: dict[str, Any] = client.get("/stats").json()
        if all(stats[name] == value for name, value in expected.items()):
            return stats
        assert time.monotonic() < deadline, f"stats never reached {expected}: {stats}"
        time.sleep(0.002)


def assert_conserved(stats: dict[str, Any]) -> None:
    assert stats["submitted"] == (stats["succeeded"] + stats["dead"] + stats["cancelled"]
                                  + stats["waiting"] + stats["delayed"] + stats["running"])


class Gate:
    """A deploy function that holds its jobs until the test (in another thread) opens it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def deploy(self, service: str, *, version: str) -> str:
        self.loop = asyncio.get_running_loop()
        await self.event.wait()
        return f"{service} now runs {version}"

    def open(self) -> None:
        assert self.loop is not None, "no job has reached the gate"
        self.loop.call_soon_threadsafe(self.event.set)


def test_deploy_returns_the_job_result(serve: Callable[[Starlette], TestClient]) -> None:
    """POST /deploy/{service} submits a job, awaits it and returns its result as JSON."""
    app = web_app.create_app(workers=2, maxsize=4)
    with serve(app) as client:
        response = client.post("/deploy/api", params={"version": "2.0"})
        assert response.status_code == 200
        body = response.json()
        assert body["result"] == "api now runs 2.0"
        assert body["attempts"] == 1
        assert client.post("/deploy/Not_A_Name").status_code == 400
    assert app.state.pool.state is asyncq.PoolState.CLOSED  # the lifespan closed the pool


def test_failed_deploy_is_502_and_a_dead_letter(serve: Callable[[Starlette], TestClient]) -> None:
    """A job that keeps failing is retried, then answered 502 and kept in the dead letters."""
    with serve(web_app.create_app(workers=2, maxsize=4)) as client:
        response = client.post("/deploy/legacy-billing", params={"version": "2.0"})
        assert response.status_code == 502
        assert response.json()["attempts"] == 3
        assert "host unreachable" in response.json()["error"]
        letters = client.get("/dead-letters").json()
        assert [(d["args"], d["reason"]) for d in letters] == [
            (["legacy-billing"], "attempts_exhausted")]


def test_stats_show_conservation(serve: Callable[[Starlette], TestClient]) -> None:
    """GET /stats reports counters that add up: submitted == terminal + in flight."""
    with serve(web_app.create_app(workers=2, maxsize=4)) as client:
        services = ["api", "web", "legacy-crm", "cache"]
        codes = [client.post(f"/deploy/{s}").status_code for s in services]
        assert codes == [200, 200, 502, 200]
        stats = client.get("/stats").json()
        assert_conserved(stats)
        assert stats["submitted"] == 4
        assert stats["succeeded"] == 3
        assert stats["dead"] == stats["dead_letters"] == 1
        assert stats["failed"] == 3
        assert stats["retried"] == 2
        assert stats["workers"] == 2


def test_full_pool_answers_503(serve: Callable[[Starlette], TestClient]) -> None:
    """With every worker busy and ``maxsize`` jobs waiting, a request gets 503 at once."""
    gate = Gate()
    app = web_app.create_app(workers=1, maxsize=2, deploy_fn=gate.deploy)
    with serve(app) as client, ThreadPoolExecutor(max_workers=3) as threads:
        first = threads.submit(client.post, "/deploy/api")
        wait_for_stats(client, running=1)
        queued = [threads.submit(client.post, f"/deploy/{name}") for name in ("web", "cache")]
        stats = wait_for_stats(client, running=1, waiting=2)
        assert_conserved(stats)

        refused = client.post("/deploy/search")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert wait_for_stats(client, submitted=3)["submitted"] == 3  # nothing admitted

        gate.open()
        answers = [future.result(timeout=5) for future in (first, *queued)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["result"] for a in answers] == [
            "api now runs latest", "web now runs latest", "cache now runs latest"]
        stats = client.get("/stats").json()
        assert_conserved(stats)
        assert stats["succeeded"] == 3
        assert client.post("/deploy/search").status_code == 200  # room again
