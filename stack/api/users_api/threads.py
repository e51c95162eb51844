"""Worker threads that a frozen database cannot turn into a hung process.

Blocking database calls run in threads so the event loop stays free and a
request can be answered at its deadline. Two details matter:

* ``concurrent.futures.ThreadPoolExecutor`` joins its workers at interpreter
  exit, so one thread blocked on a SIGSTOPped PostgreSQL would make SIGTERM
  hang forever. :class:`DaemonThreadPool` uses daemon threads instead.
* A probe that can hang (health check, schema creation) must not be started
  again while the last one is still stuck, or stuck threads pile up.
  :class:`SingleFlight` lets every caller share the one call in flight.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Generic, TypeVar

__all__ = ["DaemonThreadPool", "SingleFlight"]

T = TypeVar("T")

_Job = tuple[Future, Callable[..., Any], tuple, dict]


class DaemonThreadPool(Executor):
    """An executor with at most ``max_workers`` daemon threads, started on demand."""

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self._max_workers = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shut_down = False

    @property
    def thread_count(self) -> int:
        """Threads started so far (busy or idle)."""
        return len(self._threads)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; a future cancelled before it starts never runs."""
        with self._lock:
            if self._shut_down:
                raise RuntimeError(f"{self._name} is shut down")
            future: Future[T] = Future()
            self._jobs.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            del job
            # False when the awaiting request already gave up: skip work nobody waits for.
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; with ``wait`` join workers (stuck ones are left behind as daemons)."""
        with self._lock:
            self._shut_down = True
            if cancel_futures:
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is not None:
                        job[0].cancel()
            for _ in self._threads:
                self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class SingleFlight(Generic[T]):
    """At most one call of ``fn`` runs at a time, in a daemon thread; callers share its result."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self._name = name
        self._lock = threading.Lock()
        self._current: Future[T] | None = None
        self._started = 0.0  # time.monotonic() when the current call started

    @property
    def in_flight(self) -> bool:
        """True while a call is running (possibly stuck)."""
        current = self._current
        return current is not None and not current.done()

    def future(self) -> tuple[Future[T], float]:
        """The call in flight, or a new one started now, and its start on ``time.monotonic()``."""
        with self._lock:
            if self._current is None or self._current.done():
                future: Future[T] = Future()
                future.set_running_or_notify_cancel()
                self._started = time.monotonic()
                threading.Thread(
                    target=self._run, args=(future,), name=self._name, daemon=True
                ).start()
                self._current = future
            return self._current, self._started

    def _run(self, future: Future[T]) -> None:
        try:
            result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            future.set_exception(exc)
        else:
            future.set_result(result)

    async def run(self, timeout: float) -> T:
        """Join (or start) the call; raise ``TimeoutError`` once it is ``timeout`` s old.

        The deadline counts from the call's start, not from this caller's arrival: a
        caller that finds a call already stuck past its deadline is answered at once.
        """
        future, started = self.future()
        if future.done():
            return future.result()
        remaining = started + timeout - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{self._name} has had no answer for {timeout:g} s")
        # shield: a caller giving up must not cancel the call other callers share.
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), remaining)
