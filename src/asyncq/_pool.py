"""The ``Pool`` facade: construction, lifecycle, and the pieces users touch."""

from __future__ import annotations

import asyncio
import enum
import os
import random
import weakref
from collections.abc import Callable, Hashable, Mapping
from types import TracebackType
from typing import Any

from asyncq._core import Core, not_started
from asyncq._dead import DeadLetter, DeadLetterQueue
from asyncq._errors import PoolClosed
from asyncq._job import Job
from asyncq._log import debug_enabled, job_id_var, make_logger
from asyncq._options import JobOptions, check_retry
from asyncq._rate import RateLimit, check_limits
from asyncq._retry import Retry
from asyncq._stats import Latency, Stats
from asyncq._submit import Submitter
from asyncq._validate import check_int, check_optional_int, check_timeout, check_weights
from asyncq._worker import Worker

#: Pools started and not yet closed; ``asyncq.run`` closes them on SIGINT/SIGTERM.
running_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


class PoolState(enum.Enum):
    """Lifecycle of a pool: ``NEW`` → ``RUNNING`` → ``CLOSING`` → ``CLOSED``."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Pool(Submitter):
    """A bounded queue feeding ``workers`` coroutine workers.

    Guarantees (each one tested):

    * **Conservation** — every admitted job ends exactly once as succeeded, dead (in
      :attr:`dead_letters`) or cancelled, and its handle resolves; at every moment
      ``submitted == succeeded + dead + cancelled + waiting + delayed + running``.
    * **Bounded memory** — a job is admitted only while ``waiting + delayed < maxsize``;
      ``submit`` waits (FIFO among producers) and ``submit_nowait`` raises ``QueueFull``.
      A retry never waits for room, so the jobs held (waiting + delayed + running) never
      exceed ``maxsize + workers``.
    * **Order** — jobs start in submission order; with ``workers=1`` they run strictly one
      after another.
    * **Workers never sleep for a delay or a retry** — those wait on one timer heap on the
      loop's monotonic clock.
    * **Isolation** — a job's exception, timeout or cancellation affects only that job.
      ``KeyboardInterrupt``/``SystemExit`` from a job stops the pool (the rest is
      cancelled) and is raised again by :meth:`close`.
    * **Fair to the loop** — a worker runs at most 64 attempts back to back before yielding.
    * **Graceful shutdown** — :meth:`close` stops admission, drains (or cancels) and
      resolves every handle.

    ``workers``: coroutine workers (an int >= 1). ``maxsize``: jobs that may wait (an int
    >= 1, or ``None`` for an explicitly unbounded pool). ``retry``: the default
    :class:`Retry` (``None``: one attempt, no retry). ``timeout``: default seconds per
    attempt (``None``: no limit). ``on_dead``: called with each :class:`DeadLetter`.
    ``dead_letter_file``: a JSON Lines file that each dead letter is appended to.
    ``logger``: a structlog logger (default ``structlog.get_logger("asyncq")``).
    ``seed``: seeds the random generator behind retry jitter. ``group_weights``,
    ``priority_aging``, ``rate_limit``, ``group_rate_limits``, ``key_rate_limit``: see
    balancing in :meth:`options`. ``copy_context``: run each job in a copy of the context
    it was submitted from (as ``asyncio.create_task`` does) instead of its worker's
    context; it costs a little time per job. ``bind_job_id``: bind each running job's id
    as ``job_id`` in structlog's context variables, where tasks the job spawns see it too
    (about 0.1 µs per job); :func:`asyncq.add_job_id` adds it to log events at no cost
    per job.

    The pool may be built outside a running loop; it starts on ``async with`` (or
    :meth:`start`) and runs on that loop only.
    """

    __slots__ = (
        "__weakref__",
        "_aging",
        "_bind_job_id",
        "_closing",
        "_copy_context",
        "_core",
        "_dead_letter_file",
        "_dead_letters",
        "_group_weights",
        "_limits",
        "_logger",
        "_maxsize",
        "_rng",
        "_tasks",
        "_workers",
    )

    def __init__(
        self,
        workers: int = 8,
        maxsize: int | None = 1000,
        retry: Retry | None = None,
        timeout: float | None = None,
        *,
        on_dead: Callable[[DeadLetter], object] | None = None,
        dead_letter_file: str | os.PathLike[str] | None = None,
        logger: Any | None = None,
        seed: int | None = None,
        group_weights: Mapping[Hashable, int] | None = None,
        priority_aging: float | None = None,
        rate_limit: RateLimit | None = None,
        group_rate_limits: Mapping[Hashable, RateLimit] | None = None,
        key_rate_limit: RateLimit | None = None,
        copy_context: bool = False,
        bind_job_id: bool = False,
    ) -> None:
        self._workers = check_int("workers", workers, minimum=1)
        self._maxsize = check_optional_int("maxsize", maxsize, minimum=1)
        options = JobOptions(timeout=check_timeout("timeout", timeout), retry=check_retry(retry))
        if on_dead is not None and not callable(on_dead):
            raise TypeError(f"on_dead must be a callable taking a DeadLetter, got {on_dead!r}")
        if dead_letter_file is not None and not isinstance(dead_letter_file, str | os.PathLike):
            raise TypeError(f"dead_letter_file must be a path, got {dead_letter_file!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self._group_weights = check_weights(group_weights)
        self._aging = check_timeout("priority_aging", priority_aging)
        self._limits = check_limits(rate_limit, group_rate_limits, key_rate_limit)
        if not isinstance(copy_context, bool):
            raise TypeError(f"copy_context must be a bool, got {copy_context!r}")
        self._copy_context = copy_context
        if not isinstance(bind_job_id, bool):
            raise TypeError(f"bind_job_id must be a bool, got {bind_job_id!r}")
        self._bind_job_id = bind_job_id
        super().__init__(self, options)
        self._dead_letter_file = dead_letter_file
        self._logger = logger
        self._rng = random.Random(seed)
        self._dead_letters = DeadLetterQueue(self._resubmit, on_dead)
        self._core: Core | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return (f"<Pool {self.state.name} workers={self._workers} maxsize={self._maxsize} "
                f"retry={self._options.retry!r} timeout={self._options.timeout!r}>")

    # -- properties ---------------------------------------------------------------------
    @property
    def state(self) -> PoolState:
        """Where the pool is in its lifecycle (derived, never stored twice)."""
        if self._core is None:
            return PoolState.CLOSED if self._closing is not None else PoolState.NEW
        if self._core.open:
            return PoolState.RUNNING
        closing = self._closing
        return PoolState.CLOSED if closing is not None and closing.done() else PoolState.CLOSING

    @property
    def workers(self) -> int:
        """The number of workers."""
        return self._workers

    @property
    def maxsize(self) -> int | None:
        """How many jobs may wait (waiting + delayed); ``None`` when unbounded."""
        return self._maxsize

    @property
    def dead_letters(self) -> DeadLetterQueue:
        """The jobs that finally failed, as :class:`DeadLetter` records."""
        return self._dead_letters

    def stats(self) -> Stats:
        """An immutable snapshot of counters, gauges and latency percentiles."""
        core = self._core
        if core is None:
            zero = Latency()
            return Stats(0, 0, 0, 0, 0, 0, 0, 0, 0, self._workers, len(self._dead_letters),
                         zero, zero)
        return Stats(
            submitted=core.submitted, succeeded=core.succeeded, failed=core.failed,
            retried=core.retried, dead=core.dead, cancelled=core.cancelled,
            waiting=core.waiting, delayed=core.delayed, running=core.running,
            workers=self._workers, dead_letters=len(self._dead_letters),
            queue_wait=core.wait_samples.latency(), run_time=core.run_samples.latency(),
            **core.balancer.snapshot(),
        )

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the workers on the running loop (``async with`` does this)."""
        if self._core is not None or self._closing is not None:
            if self.state is PoolState.RUNNING:
                raise RuntimeError("the pool is already started")
            raise PoolClosed("a closed pool cannot be started again; create a new Pool")
        loop = asyncio.get_running_loop()
        logger = make_logger(self._logger)
        self._dead_letters.open_sink(self._dead_letter_file)
        core = Core(loop, self._maxsize, self._dead_letters,
                    logger=logger, debug=debug_enabled(logger), rng=self._rng,
                    group_weights=self._group_weights, aging=self._aging,
                    copy_context=self._copy_context, **self._limits)
        self._core = core
        self._add_workers(core, self._workers)
        running_pools.add(self)
        logger.info("pool.started", workers=self._workers, maxsize=self._maxsize)

    def _add_workers(self, core: Core, count: int) -> None:
        var = job_id_var() if self._bind_job_id else None
        for _ in range(count):
            worker = Worker(core)
            core.workers.append(worker)
            self._tasks.append(worker.start(var))

    def resize(self, workers: int) -> None:
        """Change the number of workers live.

        Growing starts workers at once. Shrinking retires workers: idle ones stop at once,
        busy ones after their current attempt (running jobs are never interrupted). While
        retiring workers finish, the bound on held jobs is ``maxsize`` plus the larger of
        the old and new counts.
        """
        workers = check_int("workers", workers, minimum=1)
        core = self._core
        if core is None or not core.open:
            raise PoolClosed("resize() needs a running pool") if core is not None \
                else not_started()
        active = [w for w in core.workers if not w.retiring]
        if workers > len(active):
            for worker in core.workers:  # busy workers still retiring come back first
                if worker.retiring and len(active) < workers:
                    worker.retiring = False
                    active.append(worker)
            self._add_workers(core, workers - len(active))
        else:
            # retire idle workers first, then busy ones (they finish their job first)
            for worker in sorted(active, key=lambda w: w.job is not None)[:len(active) - workers]:
                worker.retire()
        self._workers = workers
        core.log.info("pool.resized", workers=workers)

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving the block drains; leaving it by an exception cancels what is left."""
        await self.close(drain=exc_type is None)

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop admitting, then drain or cancel; return when every job is terminal.

        With ``drain=True`` (the default) waiting jobs run and delayed jobs and retries
        fire; whatever is still left when ``timeout`` seconds have passed is cancelled.
        With ``drain=False`` everything not finished is cancelled at once (running
        attempts are cancelled and awaited). Producers blocked in ``submit`` get
        ``PoolClosed``. Idempotent: a second call waits for the first to finish. If a job
        raised ``KeyboardInterrupt`` or ``SystemExit``, that error is raised here once the
        pool is closed.

        A call with ``drain=False`` while a draining close is under way cancels what is
        left at once (``asyncq.run`` does this on a second signal).
        """
        if not isinstance(drain, bool):
            raise TypeError(f"drain must be a bool, got {drain!r}")
        timeout = check_timeout("timeout", timeout)
        core = self._core
        if core is not None and any(w.task is asyncio.current_task() for w in core.workers):
            raise RuntimeError("close() called from inside a job of this pool would wait for "
                               "that job itself; close the pool from outside its jobs")
        if self._closing is not None:
            if not drain and core is not None and not self._closing.done():
                core.cancel_all("cancelled: the pool closed")  # escalate a draining close
            await asyncio.shield(self._closing)
        elif core is None:
            self._closing = asyncio.get_running_loop().create_future()
            self._closing.set_result(None)
        else:
            self._closing = core.loop.create_future()
            try:
                await self._shut_down(core, drain, timeout)
            finally:
                running_pools.discard(self)
                self._closing.set_result(None)
        if core is not None and core.fatal is not None:
            raise core.fatal

    async def _shut_down(self, core: Core, drain: bool, timeout: float | None) -> None:
        core.close_admission()
        core.log.info("pool.closing", drain=drain, timeout=timeout)
        try:
            core.draining = core.loop.create_future()
            core.watch = True
            core.check_drained()
            if drain:
                try:
                    async with asyncio.timeout(timeout):
                        await asyncio.shield(core.draining)
                except TimeoutError:
                    pass
            core.cancel_all("cancelled: the pool closed")
            await asyncio.shield(core.draining)
        except asyncio.CancelledError:
            core.cancel_all("cancelled: the pool closed")
            core.stop_workers()
            raise
        core.stop_workers()
        errors = [r for r in await asyncio.gather(*self._tasks, return_exceptions=True)
                  if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        core.timers.stop()
        self._dead_letters.close_sink()
        s = self.stats()
        core.log.info("pool.closed", submitted=s.submitted, succeeded=s.succeeded, dead=s.dead,
                      cancelled=s.cancelled)
        if errors:
            raise errors[0]

    # -- dead letters -------------------------------------------------------------------
    async def _resubmit(self, letter: DeadLetter) -> Job[Any]:
        options = letter.options if isinstance(letter.options, JobOptions) else self._options
        return await Submitter(self, options).submit(letter.fn, *letter.args, **letter.kwargs)
