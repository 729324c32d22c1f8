"""Logging through structlog, without configuring it.

Events have stable, namespaced, past-tense names and carry ``job_id``, ``fn`` and
``attempt``:

============================  =======  ===================================================
event                         level    when
============================  =======  ===================================================
``pool.started``              info     workers started
``pool.closing``              info     ``close()`` began (``drain``, ``timeout``)
``pool.closed``               info     every job is terminal and the workers have stopped
``job.started``               debug    an attempt began
``job.succeeded``             debug    the job returned
``job.retry_scheduled``       debug    an attempt failed and another is on the timer
``job.cancelled``             debug    the job ended cancelled
``job.dead``                  warning  the job went to the dead letters
``job.retry_on_failed``       error    a ``retry_on`` check raised: the job is not retried
``job.retry_backoff_failed``  error    a ``Retry`` subclass's ``backoff`` failed
``dead_letter.hook_failed``   error    the ``on_dead`` callback or the file sink raised
============================  =======  ===================================================

An event that structlog fails to log (one of its processors raised) is reported to the
standard library's ``asyncq`` logger instead; it never raises into the pool.

Per-job debug events are decided once, when the pool starts: if the logger does not have
debug enabled, the hot path pays one boolean test. When structlog has not been configured
at all, debug events stay off (as with the standard library's default level).

Code inside a job can carry the job's id in its own log events in two ways:

* :func:`add_job_id`, a structlog processor: it looks the running job up when an event
  is logged, so it costs nothing per job. It sees the job's own task only.
* ``Pool(bind_job_id=True)``: each job's id is bound as ``job_id`` in structlog's context
  variables while it runs, so ``structlog.contextvars.merge_contextvars`` (part of
  structlog's default configuration) adds it, in tasks the job spawns too. Binding costs
  about 0.1 µs per job, so it is off by default.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
import structlog.contextvars

from asyncq._worker import current_job

#: Where an event that could not be logged is reported instead.
_fallback = logging.getLogger("asyncq")


class EventLog:
    """The pool's logger: events go through the structlog logger it holds, but one that
    cannot be logged (a processor or renderer raised) never raises into the pool, where
    it would end a worker with a job half-routed. The failure goes, with its traceback,
    to the standard library's ``asyncq`` logger, which never raises (as ``logging``
    treats a failing handler)."""

    __slots__ = ("logger",)

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def debug(self, event: str, **fields: Any) -> None:
        """Log a debug event."""
        self.emit(self.logger.debug, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log an info event."""
        self.emit(self.logger.info, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log a warning event."""
        self.emit(self.logger.warning, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log an error event."""
        self.emit(self.logger.error, "error", event, fields)

    @staticmethod
    def emit(method: Any, level: str, event: str, fields: dict[str, Any]) -> None:
        """Call structlog's ``method``; report a failure instead of raising it."""
        try:
            method(event, **fields)
        except Exception:
            not_logged(level, event)


def not_logged(level: str, event: str) -> None:
    """Report, from inside its ``except`` block, an event structlog failed to log; to
    standard error if the ``asyncq`` logger fails too (a filter that raises, say)."""
    try:
        _fallback.error("asyncq could not log its %s event %r through structlog", level,
                        event, exc_info=True)
    except Exception:
        with contextlib.suppress(Exception):  # nowhere left to report it
            traceback.print_exc(file=sys.stderr)


def make_logger(logger: Any | None) -> EventLog:
    """The logger a pool uses: the one given, or ``structlog.get_logger("asyncq")``."""
    source = logger if logger is not None else structlog.get_logger("asyncq")
    return EventLog(source.bind())


def debug_enabled(log: EventLog) -> bool:
    """Whether per-job debug events should be emitted through ``log``."""
    if not structlog.is_configured():
        return False
    is_enabled_for = getattr(log.logger, "is_enabled_for", None)
    if is_enabled_for is None:
        return True
    return bool(is_enabled_for(logging.DEBUG))


def add_job_id(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``job_id`` when the event is logged from a running job.

    Put it in the processor chain, e.g.
    ``structlog.configure(processors=[asyncq.add_job_id, *structlog.get_config()["processors"]])``.
    A ``job_id`` the event already has is kept.
    """
    job = current_job()
    if job is not None:
        event_dict.setdefault("job_id", job.id)
    return event_dict


def job_id_var() -> ContextVar[Any]:
    """The context variable structlog merges as ``job_id``."""
    token = structlog.contextvars.bind_contextvars(job_id=None)["job_id"]
    var: ContextVar[Any] = token.var
    var.reset(token)
    return var
