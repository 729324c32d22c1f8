"""Logging through structlog, without configuring it.

Events have stable, namespaced, past-tense names and carry ``job_id``, ``fn`` and
``attempt``:

=========================  =======  ==================================================
event                      level    when
=========================  =======  ==================================================
``pool.started``           info     workers started
``pool.closing``           info     ``close()`` began (``drain``, ``timeout``)
``pool.closed``            info     every job is terminal and the workers have stopped
``job.started``            debug    an attempt began
``job.succeeded``          debug    the job returned
``job.retry_scheduled``    debug    an attempt failed and another is on the timer
``job.cancelled``          debug    the job ended cancelled
``job.dead``               warning  the job went to the dead letters
``dead_letter.hook_failed`` error   the ``on_dead`` callback or the file sink raised
=========================  =======  ==================================================

Per-job debug events are decided once, when the pool starts: if the logger does not have
debug enabled, the hot path pays one boolean test. When structlog has not been configured
at all, debug events stay off (as with the standard library's default level).

While a job runs, ``job_id`` is bound in structlog's context variables, so code inside
the job that logs through ``structlog.contextvars.merge_contextvars`` (part of structlog's
default configuration) carries it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import structlog
import structlog.contextvars


def make_logger(logger: Any | None) -> Any:
    """The logger a pool uses: the one given, or ``structlog.get_logger("asyncq")``."""
    source = logger if logger is not None else structlog.get_logger("asyncq")
    return source.bind()


def debug_enabled(logger: Any) -> bool:
    """Whether per-job debug events should be emitted through ``logger``."""
    if not structlog.is_configured():
        return False
    is_enabled_for = getattr(logger, "is_enabled_for", None)
    if is_enabled_for is None:
        return True
    return bool(is_enabled_for(logging.DEBUG))


def job_id_var() -> ContextVar[Any]:
    """The context variable structlog merges as ``job_id``."""
    token = structlog.contextvars.bind_contextvars(job_id=None)["job_id"]
    var: ContextVar[Any] = token.var
    var.reset(token)
    return var
