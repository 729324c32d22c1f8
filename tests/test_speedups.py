"""The C storage of job handles (``asyncq._speedups``) and its pure-Python twin.

``make test`` runs the whole suite twice: with the C module, and with
``ASYNCQ_PURE_PYTHON=1``. The tests here check the choice itself, that both twins have the
same fields, and what only the C module does (its own collector walk and ``await``), by
importing it directly, so they run in both passes.
"""

from __future__ import annotations

import copy
import gc
import importlib
import os
import pickle
import shutil
import subprocess
import sys
import types
import weakref
from pathlib import Path
from typing import Any

import pytest

import asyncq
from asyncq import _job, _native
from benchmarks.compare import build_c_module

BUILD_HINT = (
    "asyncq._speedups is not built: reinstall with a C compiler available "
    "(`pip install -e .`, or `make clean test`)"
)


def speedups() -> types.ModuleType:
    try:
        return importlib.import_module("asyncq._speedups")
    except ImportError as error:  # a clear failure, not a skip
        raise AssertionError(BUILD_HINT) from error


def speedups_with_states() -> types.ModuleType:
    """The C module, with the states and finished class set as ``asyncq._job`` sets them
    when it uses the C storage (under ``ASYNCQ_PURE_PYTHON=1`` it does not)."""
    module = speedups()
    if not _job.SPEEDUPS:
        base: Any = module.JobBase

        class Finished(base):
            __slots__ = ()

        module.adopt(Finished)
        module.set_states(asyncq.JobState.WAITING, asyncq.JobState.SUCCEEDED, Finished)
    return module


def test_the_c_storage_is_used_unless_pure_python_is_asked_for() -> None:
    if os.environ.get("ASYNCQ_PURE_PYTHON") == "1":
        assert not _job.SPEEDUPS
        assert asyncq.Job.__mro__[1] is _job._JobSlots
    else:
        assert _job.SPEEDUPS, BUILD_HINT
        assert asyncq.Job.__mro__[1] is speedups().JobBase


def test_both_storages_have_the_same_fields() -> None:
    base = speedups().JobBase
    fields = set(_job._JobSlots.__slots__) - {"__weakref__"}
    assert _native.storage_fields(base) == fields
    assert _native.storage_fields(_job._JobSlots) == fields
    assert base.__weakrefoffset__ != 0


@pytest.mark.parametrize("line", [
    '{"first_failed_at", T_OBJECT_EX, offsetof(JobBase, first_failed_at), 0, NULL},',
    '{"untrack_inert", untrack_inert, METH_O,\n'
    '     "untrack_inert(options): out of the collector\'s lists if options.inert is True."},',
], ids=["a field", "a function"])
def test_a_build_from_other_sources_is_not_used(tmp_path: Path, line: str) -> None:
    # A stale build: a C module whose job lacks a field this code sets, or that lacks a
    # function this code calls. Importing asyncq must warn and fall back to pure Python,
    # not fail on import or on the first retried job.
    stale = tmp_path / "stale"
    shutil.copytree(Path(_job.__file__).parent, stale / "asyncq",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    source = (stale / "asyncq" / "_speedups.c").read_text()
    assert line in source
    (stale / "asyncq" / "_speedups.c").write_text(source.replace(line, ""))
    assert build_c_module(stale) is None
    check = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import asyncq._job as j; print(j.SPEEDUPS)"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(stale), "ASYNCQ_PURE_PYTHON": ""})
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "False"
    assert "built from other sources" in check.stderr




async def test_a_finished_job_in_a_cycle_is_collected() -> None:
    # job -> result (a list) -> job: only a collector walk that visits the result frees it.
    async def listing() -> list[Any]:
        return []

    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(listing)
        result = await job
        result.append(job)
    alive = weakref.ref(job)
    del job, result
    gc.collect()
    assert alive() is None


async def test_a_waiting_job_shows_the_collector_what_it_holds() -> None:
    async with asyncq.Pool(workers=1) as pool:
        holder: list[Any] = []
        job = await pool.submit(hold, holder)
        assert job.state is asyncq.JobState.WAITING
        holder.append(job)  # job -> args -> holder -> job while it waits
        referents = gc.get_referents(job)
        assert any(ref is job.args for ref in referents)
        assert any(ref is job.fn for ref in referents)
        assert any(ref is job.options for ref in referents)
        assert any(ref is type(job) for ref in referents)  # the per-pool class it holds
        assert await job == 1
    alive = weakref.ref(job)
    del job, holder, referents
    gc.collect()
    assert alive() is None


async def hold(holder: list[Any]) -> int:
    return len(holder)


async def test_await_on_a_succeeded_job_returns_the_result_every_time() -> None:
    async def value() -> dict[str, int]:
        return {"a": 1}

    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(value)
        first = await job
        assert job.state is asyncq.JobState.SUCCEEDED
        assert await job is first
        assert await job is first


async def finished_job(value: object) -> asyncq.Job[object]:
    """A job that has succeeded with ``value`` (its pool already closed)."""
    async def give() -> object:
        return value

    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(give)
        await job
    return job


async def test_awaiting_a_succeeded_job_by_hand_behaves_like_a_finished_generator() -> None:
    job = await finished_job(7)
    step = job.__await__()
    with pytest.raises(StopIteration) as stop:
        next(step)
    assert stop.value.value == 7
    with pytest.raises(StopIteration) as again:
        next(step)
    assert again.value.value is None
    sent = job.__await__()
    with pytest.raises(StopIteration) as by_send:
        sent.send(None)
    assert by_send.value.value == 7
    thrown = job.__await__()
    with pytest.raises(KeyError):
        thrown.throw(KeyError("k"))
    closed = job.__await__()
    closed.close()
    with pytest.raises(StopIteration) as after_close:
        next(closed)
    assert after_close.value.value is None


async def test_a_tuple_result_comes_back_whole_through_next() -> None:
    job = await finished_job((1, 2))
    assert await job == (1, 2)
    with pytest.raises(StopIteration) as stop:
        next(job.__await__())
    assert stop.value.value == (1, 2)


def test_the_c_helpers_reject_what_they_cannot_handle() -> None:
    module = speedups()
    with pytest.raises(TypeError, match="subclass of JobBase"):
        module.adopt(int)

    base: Any = module.JobBase

    class WithSlot(base):
        __slots__ = ("more",)

    class WithDel(base):
        __slots__ = ()

        def __del__(self) -> None:
            pass

    for cls in (WithSlot, WithDel):
        with pytest.raises(TypeError, match="__slots__ = \\(\\) and no __del__"):
            module.adopt(cls)


def test_an_adopted_class_is_walked_by_the_collector() -> None:
    module = speedups_with_states()

    base: Any = module.JobBase

    class Plain(base):
        __slots__ = ()

    module.adopt(Plain)
    made = module.make_job(Plain, 1, None, (), {}, None)
    assert type(made) is Plain
    alive = weakref.ref(made)
    made.fn = made  # a cycle through a field, walked by the adopted traverse
    del made
    gc.collect()
    assert alive() is None


async def test_a_handle_cannot_be_pickled_or_copied_and_refuses_arguments() -> None:
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(hold, [])
        for action in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="cannot be pickled or copied"):
                action(job)
        with pytest.raises(TypeError):
            type(job)(1)
        assert job.__weakref__ is None
        alive = weakref.ref(job)
        assert job.__weakref__ is alive
        await job


def test_make_job_gives_a_waiting_job_with_every_field_set() -> None:
    class Plain(_job.Job[Any]):
        __slots__ = ()

    def fn() -> None:
        pass

    options = object()
    made = _job.make_job(Plain, 7, fn, (1,), {}, options)
    assert type(made) is Plain
    assert (made.id, made.fn, made.args, made.kwargs, made.options) == (7, fn, (1,), {}, options)
    assert made.state is asyncq.JobState.WAITING
    assert made.attempts == 0
    assert made._outcome is made.extra is made.first_failed_at is None
    module = speedups_with_states()  # the C function's own checks, whichever storage
    with pytest.raises(TypeError, match="6 arguments"):
        module.make_job(module.JobBase, 7)
    with pytest.raises(TypeError, match="subclass of JobBase"):
        module.make_job(dict, 7, fn, (), {}, options)
    with pytest.raises(TypeError):  # the id is kept as a C integer
        module.make_job(module.JobBase, "7", fn, (), {}, options)
    big = module.make_job(module.JobBase, 2**40, fn, (), {}, options)
    assert big.id == 2**40
