"""Checked by ``mypy --strict`` (never run): submit is typed by the job function.

Each ``# type: ignore[...]`` marks a call that must be a type error; with
``warn_unused_ignores`` (part of ``--strict``) mypy fails if any of them stops being one.
"""

from __future__ import annotations

import asyncq


async def deploy(env: str, *, version: str) -> int:
    return len(env + version)


async def check(pool: asyncq.Pool) -> None:
    job: asyncq.Job[int] = await pool.submit(deploy, "prod", version="1.2")
    result: int = await job
    also: asyncq.Job[int] = pool.submit_nowait(deploy, "qa", version="1")
    later = await pool.options(delay=1.0, timeout=5.0).submit(deploy, "x", version="2")
    results: list[int] = await pool.map(deploy, ["a", "b"], version="1")
    del result, also, later, results

    await pool.submit(deploy, 1, version="1.2")  # type: ignore[arg-type]
    await pool.submit(deploy, "prod", version=2)  # type: ignore[arg-type]
    await pool.submit(deploy, "prod", release="1.2")  # type: ignore[call-arg]
    wrong: asyncq.Job[str] = await pool.submit(deploy, "p", version="1")  # type: ignore[arg-type]
    del wrong

    # A succeeded job lets go of its function and arguments: they may be None.
    name: str = job.fn.__name__  # type: ignore[union-attr]
    count = len(job.args)  # type: ignore[arg-type]
    del name, count
