"""A CI/CD pipeline on one pool: build -> (test, lint in parallel) -> deploy.

Four services go through the pipeline at once. ``after=`` chains the stages, so a deploy
starts only when its service's test and lint have both succeeded; ``key=`` makes deploys
to one environment run one at a time (never two deploys to prod together) while other
work keeps flowing. One service's tests fail: its deploy never runs and ends cancelled
with ``DependencyFailed``, and nothing else is held up.

Run it with ``python examples/pipeline.py``.
"""

from __future__ import annotations

import asyncio
import time

import asyncq

SERVICES = ["api", "web", "worker", "billing"]
BROKEN_TESTS = {"billing"}
began = time.monotonic()
deploying: dict[str, int] = {}
overlaps: list[str] = []
timeline: list[tuple[float, str]] = []


def mark(event: str) -> None:
    timeline.append((time.monotonic() - began, event))


async def stage(name: str, service: str, seconds: float) -> str:
    mark(f"{name:6} {service} started")
    await asyncio.sleep(seconds)
    if name == "test" and service in BROKEN_TESTS:
        raise AssertionError(f"{service}: 3 tests failed")
    mark(f"{name:6} {service} done")
    return f"{name} {service}"


async def deploy(service: str, env: str) -> str:
    deploying[env] = deploying.get(env, 0) + 1
    if deploying[env] > 1:
        overlaps.append(env)
    mark(f"deploy {service} -> {env} started")
    await asyncio.sleep(0.02)
    deploying[env] -= 1
    mark(f"deploy {service} -> {env} done")
    return f"{service}@{env}"


async def main() -> None:
    async with asyncq.Pool(workers=8, maxsize=100) as pool:
        deploys: dict[str, asyncq.Job[str]] = {}
        for service in SERVICES:
            build = await pool.submit(stage, "build", service, 0.03)
            checks = pool.options(after=[build])
            test = await checks.submit(stage, "test", service, 0.02)
            lint = await checks.submit(stage, "lint", service, 0.01)
            to_prod = pool.options(after=[test, lint], key="deploy:prod")
            deploys[service] = await to_prod.submit(deploy, service, "prod")

        for service, job in deploys.items():
            try:
                print(f"deployed {await job}")
            except asyncq.DependencyFailed as exc:
                print(f"{service}: not deployed ({exc})")

    for offset, event in timeline:
        print(f"  {offset * 1000:6.1f} ms  {event}")
    stats = pool.stats()
    print(f"submitted={stats.submitted} succeeded={stats.succeeded} dead={stats.dead} "
          f"cancelled={stats.cancelled}")
    assert not overlaps, f"deploys overlapped in {overlaps}"
    assert deploys["billing"].state is asyncq.JobState.CANCELLED
    assert all(deploys[s].state is asyncq.JobState.SUCCEEDED for s in SERVICES[:3])
    assert stats.submitted == stats.succeeded + stats.dead + stats.cancelled


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    asyncq.run(main())
