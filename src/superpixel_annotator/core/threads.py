"""Threads for work that numba kernels or C code split across cores, outside the GIL."""

from __future__ import annotations

import itertools
import os

WORKERS = min(4, os.cpu_count() or 1)
"""One thread per core, at most 4."""


def slabs(length: int, parts: int = WORKERS) -> list[tuple[int, int]]:
    """``range(length)`` cut into at most ``parts`` consecutive ``(start, stop)`` pieces of
    nearly equal lengths, none empty."""
    bounds = [length * part // parts for part in range(parts + 1)]
    return [(start, stop) for start, stop in itertools.pairwise(bounds) if stop > start]
