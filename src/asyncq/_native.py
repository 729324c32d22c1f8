"""The optional C module, ``asyncq._speedups``, loaded once: :data:`speedups`, or ``None``.

``None`` when it is not built (installed without a C compiler), when
``ASYNCQ_PURE_PYTHON=1`` is set, or when the build is stale: left over from other sources
(a pull without reinstalling), its job storage lacks a field of :data:`JOB_FIELDS` or it
lacks a function of :data:`C_FUNCTIONS`. A stale build is refused with a
``RuntimeWarning``; asyncq then runs in pure Python, with the same behaviour.
"""

from __future__ import annotations

import importlib
import os
import types
import warnings
from typing import TYPE_CHECKING, Any

#: The fields of a job handle, in either storage (``asyncq._job``).
JOB_FIELDS = ("_outcome", "args", "attempts", "extra", "first_failed_at", "fn", "id",
              "kwargs", "options", "state")

#: The functions of ``asyncq._speedups`` that asyncq calls.
C_FUNCTIONS = ("adopt", "finish", "let_go", "make_job", "set_states", "untrack_inert")


def storage_fields(base: type) -> frozenset[str]:
    """The names of the fields a job storage class declares (slots or C members)."""
    return frozenset(
        name for name, value in vars(base).items()
        if isinstance(value, types.MemberDescriptorType) and name != "__weakref__"
    )


def _load() -> Any:
    if os.environ.get("ASYNCQ_PURE_PYTHON") == "1":
        return None
    try:
        _speedups = importlib.import_module("asyncq._speedups")
    except ImportError:  # not built: installed without a C compiler
        return None
    if (storage_fields(_speedups.JobBase) != frozenset(JOB_FIELDS)
            or not all(hasattr(_speedups, name) for name in C_FUNCTIONS)):
        warnings.warn(
            "asyncq._speedups was built from other sources than this asyncq "
            "(reinstall to rebuild it: pip install -e .); using pure-Python job storage",
            RuntimeWarning, stacklevel=3,
        )
        return None
    return _speedups


#: The C module, or ``None`` (type checkers see the pure-Python code paths).
speedups: Any = None if TYPE_CHECKING else _load()

if TYPE_CHECKING or speedups is None:

    def untrack_inert(options: Any) -> None:
        """Take ``options`` off the garbage collector's lists if ``options.inert`` (C
        storage only: Python code cannot untrack an object, so here it stays tracked)."""
else:
    untrack_inert = speedups.untrack_inert
