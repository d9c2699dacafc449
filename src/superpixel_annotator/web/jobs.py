"""Turns for superpixel jobs: a bounded number per server, one per browser.

Background jobs run in processes of their own (or on Celery workers), so the bound is kept
in files: ``<cache>/jobs/slots/<n>.lock``, one per job allowed at once, each held with an
exclusive ``flock`` while a job computes. The operating system drops a lock when its process
ends, so a killed job never keeps its slot. A job finds a free slot or waits, polling, up to
the queue wait, then is refused. A browser holds ``<cache>/jobs/sessions/<n>.lock`` (its
session id hashed into one of :data:`SESSION_BUCKETS`) while its job waits or runs, and a
second job of the same browser is refused at once. Servers that share the cache directory
share the bound; Celery workers on other hosts need a shared file system with ``flock``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; jobs are not bounded there.
    fcntl = None

SESSION_BUCKETS = 1024
POLL_SECONDS = 0.5
BUSY = "The server is busy computing other scans; try again in a minute."
ALREADY_RUNNING = "A scan of yours is still being opened (in this or another tab); wait for it."
QUEUED = "Queued: the server is computing other scans…"


def superpixel_progress(set_progress: Callable, start: int) -> Callable[[float, str], None]:
    """A :data:`~superpixel_annotator.core.superpixels.Progress` moving a background
    callback's progress bar (value, label) from ``start`` to 95 percent."""
    return lambda done, text: set_progress((start + round((95 - start) * done), text))


class JobRefused(Exception):
    """A job that may not run now; its message says why, in one line."""


@dataclass(frozen=True)
class JobSlots:
    """The turns of jobs of one server.

    Attributes
    ----------
    directory : Path
        Where the lock files are (``<cache>/jobs``).
    count : int
        Most jobs at once.
    queue_seconds : float
        Longest wait for a free slot.
    """

    directory: Path
    count: int
    queue_seconds: float

    @contextmanager
    def turn(self, session, waiting: Callable[[], None]) -> Iterator[None]:
        """Hold a slot (and the session's lock) while the ``with`` block runs.

        Parameters
        ----------
        session : str or None
            The browser's session id; anything else is no session, bounded only by slots.
        waiting : callable
            Called before each wait for a slot (to show the user the job is queued).

        Raises
        ------
        JobRefused
            When the session runs a job already, or no slot frees within the queue wait.
        """
        with ExitStack() as stack:
            if isinstance(session, str) and session:
                bucket = int(hashlib.sha256(session.encode()).hexdigest(), 16) % SESSION_BUCKETS
                if not stack.enter_context(self._lock("sessions", bucket)):
                    raise JobRefused(ALREADY_RUNNING)
            deadline = time.monotonic() + self.queue_seconds
            while not self._take_slot(stack):
                if time.monotonic() >= deadline:
                    raise JobRefused(BUSY)
                waiting()
                time.sleep(POLL_SECONDS)
            yield

    def _take_slot(self, stack: ExitStack) -> bool:
        for slot in range(self.count):
            locks = ExitStack()
            if locks.enter_context(self._lock("slots", slot)):
                stack.push(locks.pop_all())
                return True
            locks.close()
        return False

    @contextmanager
    def _lock(self, kind: str, number: int) -> Iterator[bool]:
        """Try to lock file ``number`` of ``kind`` without waiting; yield whether it worked."""
        folder = self.directory / kind
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / f"{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
            yield True
        finally:
            os.close(descriptor)
