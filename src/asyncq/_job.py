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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Protocol, SupportsIndex, TypeVar

from asyncq._errors import JobCancelled
from asyncq._native import JOB_FIELDS
from asyncq._native import speedups as _speedups

if TYPE_CHECKING:
    from asyncq._options import JobOptions

T = TypeVar("T")
_new = object.__new__


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


class _JobSlots:
    """The fields of a job handle in pure Python: the twin of ``asyncq._speedups.JobBase``.

    Used when the C module is not built, or when ``ASYNCQ_PURE_PYTHON=1`` is set. Both have
    the same fields and the same ``await``; :class:`Job` adds the behaviour to either.
    """

    # Few slots: the garbage collector visits every slot of every handle a caller holds
    # (there may be hundreds of thousands) in each collection. Rarely used fields live in
    # ``extra``; the pool a job belongs to is a class attribute (see :func:`job_class_for`).
    __slots__ = ("__weakref__", *JOB_FIELDS)

    _outcome: Any
    state: JobState

    def __await__(self) -> Generator[Any, None, Any]:
        if self.state is SUCCEEDED:
            return self._outcome
        return (yield from self._wait())  # type: ignore[attr-defined]


#: Whether job handles use the C storage of ``asyncq._speedups``.
SPEEDUPS = _speedups is not None

if TYPE_CHECKING or _speedups is None:
    _JobBase = _JobSlots

    def make_job(cls: type[Any], id: int, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], options: Any) -> Any:
        """A ``WAITING`` job of class ``cls`` with every field set (``Admission.admit``)."""
        job = _new(cls)  # slot by slot: cheaper than a class call with __init__
        job.id = id
        job.fn = fn
        job.args = args
        job.kwargs = kwargs
        job.options = options
        job.state = WAITING
        job.attempts = 0
        job._outcome = job.extra = job.first_failed_at = None
        return job

    def _adopt(cls: type) -> None:
        """Nothing to do for the pure-Python storage."""
else:
    _JobBase = _speedups.JobBase
    make_job = _speedups.make_job
    _adopt = _speedups.adopt


class Job(_JobBase, Generic[T]):
    """A handle on one submitted job; ``await job`` gives its result.

    Awaiting returns the result, raises the job's own final exception when it died (the
    same object the job raised), or raises :class:`asyncq.JobCancelled` when it was
    cancelled. Awaiting with a timeout, or cancelling the awaiting task, never cancels the
    job; only :meth:`cancel` does. The handle may be dropped: the pool keeps the job alive
    until it is terminal. It cannot be pickled or copied.

    Once it has succeeded, a handle keeps its id, state, attempts, options and result and
    lets go of the rest: its arguments, its function (``fn`` is then ``None``) and its
    pool (its class becomes ``Job`` itself). Holding many finished handles keeps nothing
    else alive, and, in the usual case, costs the garbage collector nothing (see
    :func:`finish`).
    """

    # The fields live in the base (``_speedups.JobBase`` or ``_JobSlots``); a subclass that
    # added any would lose the C base's direct walk by the garbage collector.
    __slots__ = ()

    # Every field is filled by the pool's admission (``Admission.admit``), the only place
    # jobs are made. ``_outcome`` holds, until the job is terminal, the futures of the
    # callers awaiting it (a list, or None while nobody waits); then the job's result, or
    # its final exception. ``fn``, ``args``, ``kwargs`` and ``first_failed_at`` are None
    # once it has succeeded, and ``_owner`` (the pool's core, a class attribute of the
    # pool's subclass) is gone.
    _owner: ClassVar[_Canceller]
    id: int
    #: The job's function; ``None`` once it has succeeded.
    fn: Callable[..., Any] | None
    #: Its positional and keyword arguments; ``None`` once it is terminal.
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    options: JobOptions
    state: JobState
    attempts: int
    extra: JobExtra | None
    #: Wall-clock time of the first failed attempt (for its dead letter), or None.
    first_failed_at: float | None
    _outcome: Any

    if TYPE_CHECKING:
        def __await__(self) -> Generator[Any, None, T]: ...  # from the base

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
        state = self.state
        if state is DEAD or state is CANCELLED:
            return self._outcome  # type: ignore[no-any-return]
        return None

    def _wait(self) -> Generator[Any, None, T]:
        state = self.state
        while state is not DEAD and state is not CANCELLED and state is not SUCCEEDED:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters: list[asyncio.Future[None]] | None = self._outcome
            if waiters is None:
                self._outcome = [waiter]
            else:
                if len(waiters) >= 8:
                    waiters[:] = [w for w in waiters if not w.done()]
                waiters.append(waiter)
            yield from waiter
            state = self.state
        if state is SUCCEEDED:
            return self._outcome  # type: ignore[no-any-return]
        raise self._outcome

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # A handle belongs to a live pool (and its callers' futures): it cannot be pickled,
        # and a copy would be a second handle on the same job. Refused alike by both storages.
        raise TypeError(f"a {type(self).__name__} handle cannot be pickled or copied")

    def __repr__(self) -> str:
        fn = self.fn
        if fn is None:  # succeeded: the function is let go (see finish)
            return f"<Job {self.id} {self.state.name} attempts={self.attempts}>"
        name = getattr(fn, "__qualname__", repr(fn))
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
        waiters = self._outcome
        self.state = state
        self._outcome = result if state is SUCCEEDED else error
        self.args = self.kwargs = None
        self.extra = None
        if waiters is not None:
            wake(waiters)

    def cancel_requested(self) -> bool:
        """Whether ``cancel()`` asked for the running attempt to be cancelled."""
        extra = self.extra
        return extra is not None and extra.cancel_requested

    def more(self) -> JobExtra:
        """The job's rarely used fields, created on first use."""
        extra = self.extra
        if extra is None:  # slot by slot: cheaper than a class call with __init__
            extra = self.extra = _new(JobExtra)
            extra.t0 = extra.context = None
            extra.cancel_requested = False
        return extra

    def cancelled_error(self, reason: str = "cancelled") -> JobCancelled:
        """The exception a cancelled job's awaiters receive."""
        return JobCancelled(self.id, reason)


_adopt(Job)

if TYPE_CHECKING or _speedups is None:

    def let_go(job: Job[Any], inert: bool) -> None:
        """A succeeded job lets go of its function and of its pool (see ``finish``)."""
        job.fn = job.first_failed_at = None
        if type(job) is not Job:
            job.__class__ = Job  # a per-pool subclass with the same (empty) slots

    def finish(job: Job[Any], result: Any, inert: bool) -> list[asyncio.Future[None]] | None:
        """RUNNING -> SUCCEEDED with ``result``; return the callers' futures to wake.

        The job keeps its id, state, attempts and result; it drops its arguments, its
        function, the time of its first failure (kept for a dead letter) and its pool (its
        class becomes :class:`Job` itself), so a caller holding many finished handles keeps
        nothing else alive. The C storage then also takes the job off the garbage
        collector's lists when nothing it still holds could refer back to it, now or later:
        its result is atomic (``asyncq._options.atomic``) and its options are ``inert``.
        """
        waiters: list[asyncio.Future[None]] | None = job._outcome
        job.state = SUCCEEDED
        job._outcome = result
        job.args = job.kwargs = job.fn = job.first_failed_at = None
        if type(job) is not Job:  # let_go(), inline: this is the worker's common case
            job.__class__ = Job
        return waiters
else:
    let_go = _speedups.let_go
    finish = _speedups.finish
    _speedups.set_states(WAITING, SUCCEEDED, Job)


def job_class_for(owner: _Canceller) -> type[Job[Any]]:
    """The class of one pool's jobs: :class:`Job` with ``_owner`` set to the pool's core.

    A subclass per pool, made once when the pool starts, keeps the owner off every job (one
    slot fewer for the collector to visit). It is still a ``Job`` by every test that
    matters: ``isinstance``, its name, its methods.
    """
    cls = type(Job.__name__, (Job,), {
        "__slots__": (), "_owner": owner, "__module__": Job.__module__,
        "__qualname__": Job.__qualname__, "__doc__": Job.__doc__,
    })
    _adopt(cls)
    return cls


class JobExtra:
    """What few jobs need, kept off the job itself so that every handle stays small.

    Made only by :meth:`Job.more`, which fills every slot.
    """

    __slots__ = ("cancel_requested", "context", "t0")

    #: Loop time the timed job was admitted, then the time its attempt began (``None``
    #: when the job is not one of the timed samples).
    t0: float | None
    #: ``cancel()`` asked for the running attempt to be cancelled.
    cancel_requested: bool
    #: The submitter's context, with ``Pool(copy_context=True)``.
    context: contextvars.Context | None


def wake(waiters: list[asyncio.Future[None]]) -> None:
    """Wake every caller awaiting a job that has just become terminal."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
