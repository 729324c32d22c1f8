"""Running a job inside a context of its own (``Pool(copy_context=True)``).

Jobs normally run inline in their worker's task and share its context variables. With
``copy_context`` each job runs in a copy of the context it was submitted from, as
``asyncio.create_task`` would give it: the submitter's request id or trace context is
visible, and what the job sets stays with the job. Each step of the job's coroutine is
run inside that context; awaited futures pass through to the worker's task unchanged, and
cancellations are thrown into the job as they arrive.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def run_in_context(context: contextvars.Context,
                   coro: Coroutine[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive ``coro`` to completion, each step inside ``context``."""
    send, throw, run = coro.send, coro.throw, context.run
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = run(send, value) if error is None else run(throw, error)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            value = yield step
        except BaseException as exc:  # thrown in by the task: hand it to the job
            value, error = None, exc
