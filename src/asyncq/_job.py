"""The job handle: state, attempts, and an awaitable result.

A :class:`Job` is created by ``submit`` and owned by exactly one part of the pool at a time
(the ready queue, a worker, the timer, or nobody once terminal). Awaiting it never touches
the job itself: each awaiting caller waits on a future of its own, so a caller's timeout or
cancellation cancels only that caller's wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from asyncq._errors import JobCancelled

if TYPE_CHECKING:
    from asyncq._options import JobOptions

T = TypeVar("T")


class JobState(enum.Enum):
    """Where a job is in its life.

    ``WAITING``: admitted, waiting for a worker (or, later, its key or dependencies).
    ``DELAYED``: on the pool's timer, for a delay or a retry backoff.
    ``RUNNING``: an attempt is running on a worker.
    ``SUCCEEDED``, ``DEAD`` (in the dead letters), ``CANCELLED``: terminal; exactly one is
    reached, once.
    """

    WAITING = "waiting"
    DELAYED = "delayed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    # Members are singletons: identity hashing keeps set and dict look-ups in C.
    __hash__ = object.__hash__

    @property
    def terminal(self) -> bool:
        """True for ``SUCCEEDED``, ``DEAD`` and ``CANCELLED``."""
        return self in TERMINAL


WAITING = JobState.WAITING
DELAYED = JobState.DELAYED
RUNNING = JobState.RUNNING
SUCCEEDED = JobState.SUCCEEDED
DEAD = JobState.DEAD
CANCELLED = JobState.CANCELLED

TERMINAL = frozenset({SUCCEEDED, DEAD, CANCELLED})

#: The legal moves. Anything else is a bug in the pool, not in user code.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    WAITING: frozenset({RUNNING, CANCELLED}),
    DELAYED: frozenset({WAITING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, DEAD, DELAYED, WAITING, CANCELLED}),
    SUCCEEDED: frozenset(),
    DEAD: frozenset(),
    CANCELLED: frozenset(),
}


class _Canceller(Protocol):
    def cancel_job(self, job: Job[Any]) -> bool: ...


class Job(Generic[T]):
    """A handle on one submitted job; ``await job`` gives its result.

    Awaiting returns the result, raises the job's own final exception when it died (the
    same object the job raised), or raises :class:`asyncq.JobCancelled` when it was
    cancelled. Awaiting with a timeout, or cancelling the awaiting task, never cancels the
    job; only :meth:`cancel` does. The handle may be dropped: the pool keeps the job alive
    until it is terminal.
    """

    __slots__ = (
        "__weakref__",
        "_cancel_requested",
        "_error",
        "_owner",
        "_result",
        "_waiters",
        "args",
        "attempts",
        "context",
        "first_failed_at",
        "fn",
        "id",
        "kwargs",
        "options",
        "state",
        "t0",
        "timeout",
    )

    first_failed_at: float
    _cancel_requested: bool
    context: contextvars.Context  # set only with Pool(copy_context=True)
    _result: Any

    def __init__(
        self,
        owner: _Canceller,
        job_id: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: JobOptions,
    ) -> None:
        self._owner = owner
        self.id = job_id
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.timeout = options.timeout
        self.state = WAITING
        self.attempts = 0
        self.t0 = 0.0
        self._error: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] | None = None
        # Set only when they happen (read with getattr defaults), to keep submit cheap:
        # _result (on success), first_failed_at (first failure), _cancel_requested.

    # -- what users see ---------------------------------------------------------------
    def done(self) -> bool:
        """True once the job is terminal: succeeded, dead or cancelled."""
        state = self.state
        return state is SUCCEEDED or state is DEAD or state is CANCELLED

    def cancel(self) -> bool:
        """Cancel the job; return False if it had already ended.

        A waiting or delayed job ends ``CANCELLED`` at once. A running attempt is cancelled
        and the job ends ``CANCELLED`` when that attempt has actually finished (whatever it
        returned), so attempts never overlap with anything that follows.
        """
        if self.done():
            return False
        return self._owner.cancel_job(self)

    @property
    def error(self) -> BaseException | None:
        """The final exception of a dead job, or the ``JobCancelled`` of a cancelled one."""
        return self._error

    def __await__(self) -> Generator[Any, None, T]:
        while (state := self.state) is not SUCCEEDED and state is not DEAD \
                and state is not CANCELLED:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters
            if waiters is None:
                self._waiters = [waiter]
            else:
                if len(waiters) >= 8:
                    waiters[:] = [w for w in waiters if not w.done()]
                waiters.append(waiter)
            yield from waiter
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"<Job {self.id} {name} {self.state.name} attempts={self.attempts}>"

    # -- used by the pool -------------------------------------------------------------
    def move(self, new: JobState) -> None:
        """Change state, checking the move against :data:`TRANSITIONS`."""
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"illegal job move {self.state.name} -> {new.name} for {self!r}")
        self.state = new

    def settle(self, state: JobState, result: Any, error: BaseException | None) -> None:
        """Enter a terminal state once and wake every caller awaiting the job."""
        if state not in TRANSITIONS[self.state]:
            self.move(state)  # raises
        self.state = state
        self._result = result
        self._error = error
        self.args = self.kwargs = None  # type: ignore[assignment]
        if self._waiters is not None:
            self.wake()

    def wake(self) -> None:
        """Wake every caller awaiting the job (it has just become terminal)."""
        waiters = self._waiters
        self._waiters = None
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def cancel_requested(self) -> bool:
        """Whether ``cancel()`` asked for the running attempt to be cancelled."""
        return getattr(self, "_cancel_requested", False)

    def cancelled_error(self, reason: str = "cancelled") -> JobCancelled:
        """The exception a cancelled job's awaiters receive."""
        return JobCancelled(self.id, reason)
