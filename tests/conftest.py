"""Shared test set-up: every async test runs on asyncio's default loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run each async test once per event loop implementation."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


class Gate:
    """An event jobs wait on, counting how many are inside at once."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.inside = 0
        self.peak = 0
        self.entered = asyncio.Event()

    async def wait(self, value: Any = None) -> Any:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        self.entered.set()
        try:
            await self.event.wait()
        finally:
            self.inside -= 1
        return value

    def open(self) -> None:
        self.event.set()


async def settle(rounds: int = 5) -> None:
    """Let the loop run a few iterations (callbacks scheduled with call_soon run)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds (fails the test after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def time_no_job(pool: Any) -> None:
    """Stop a started pool timing jobs for its latency percentiles. A timed job carries
    extra state, which sends a zero-delay retry the long way instead of the short one,
    and which jobs are timed depends on the clock (the pool times them all until they
    come fast)."""
    assert pool._core is not None
    pool._core.sample_mask = (1 << 62) - 1  # a job is timed when its id & mask == 0


def assert_conserved(stats: Any) -> None:
    """The conservation identity of DESIGN.md guarantee 1."""
    assert stats.submitted == (stats.succeeded + stats.dead + stats.cancelled + stats.waiting
                               + stats.delayed + stats.running), stats


@pytest.fixture
def gate() -> Gate:
    return Gate()


class Flaky:
    """A job function whose first ``failures`` calls raise ``error(message)``; later calls
    return ``result``. ``calls`` counts the calls."""

    def __init__(self, failures: int, result: Any = "ok", *,
                 error: type[Exception] = ConnectionError, message: str = "not yet") -> None:
        self.failures = failures
        self.result = result
        self.error = error
        self.message = message
        self.calls = 0

    async def run(self) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(self.message)
        return self.result
