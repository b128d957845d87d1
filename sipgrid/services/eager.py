"""Start a coroutine at once, and make a task of it only if it has to wait.

The EdgePort starts a coroutine for every job it gives its processor. In the all-in-one,
Connect answers most of them from memory without ever waiting, so a task for each (made,
scheduled, stepped on a later turn of the loop, its done-callback run) is work for
nothing. Python 3.12 has this as ``asyncio.eager_task_factory``; sipgrid runs on 3.11.

``start(coroutine)`` runs the coroutine up to its first wait, in the caller's turn. If it
finished, that is all. If it waits, it goes on in a task, which takes the future it waits
on and resumes it when that is done, as a task would have from the start. One difference
remains: the first step runs in the caller's context (contextvars), not in a copy of it;
sipgrid sets none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Final, TypeVar

T = TypeVar("T")


def start(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
    """Run ``coroutine`` now; None when it has finished, else the task it goes on in.
    What it raises in its first step is raised here, before any task exists."""
    try:
        waiting = coroutine.send(None)
    except StopIteration:
        return None
    return resume(coroutine, waiting)


def resume(coroutine: Coroutine[Any, Any, T], waiting: Any) -> asyncio.Task[T]:
    """The task in which a started ``coroutine`` goes on: ``waiting`` is what its first
    step yielded (what it waits on)."""
    # the loop's create_task, not ensure_future: that one asks in Python what it was given
    return asyncio.get_running_loop().create_task(_Started(coroutine, waiting))


_HANDED_OVER: Final = object()


class _Started(Coroutine[Any, Any, T]):
    """The started coroutine as its task sees it: the task's first step gets what the
    coroutine waits on; every later step, a cancellation included, goes to the coroutine.

    A future marks itself as taken when its awaiter yields it, and the task that takes
    it clears the mark. This task takes it a turn later, and until then another awaiter
    of the same future would find it taken ("await wasn't used with future"): so the
    mark is cleared here and set again when the task takes the future."""

    __slots__ = ("_blocking", "_coroutine", "_waiting")

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting
        self._blocking = bool(getattr(waiting, "_asyncio_future_blocking", False))
        if self._blocking:
            waiting._asyncio_future_blocking = False

    def send(self, value: Any) -> Any:
        waiting = self._waiting
        if waiting is _HANDED_OVER:
            return self._coroutine.send(value)
        self._waiting = _HANDED_OVER
        if self._blocking:
            waiting._asyncio_future_blocking = True
        return waiting

    def throw(self, error: Any, value: Any = None, traceback: Any = None) -> Any:
        self._waiting = _HANDED_OVER
        if value is None and traceback is None:
            return self._coroutine.throw(error)
        return self._coroutine.throw(error, value, traceback)

    def close(self) -> None:
        self._coroutine.close()

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError("a started coroutine goes on in its task; await the task")
