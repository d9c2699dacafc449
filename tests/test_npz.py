"""Reading ``.npz`` members from several threads at once, as a threaded server does."""

import gc
import io
import sys
import threading
import zipfile

import numpy as np
import pytest

from superpixel_annotator.core.npz import read_member

THREADS = 8
READS_PER_THREAD = 150


class _FinalizedCycle:
    """Garbage in a reference cycle whose finalizer runs Python code, so that a collection
    started inside one thread's header parsing can hand the interpreter to another thread."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        sum(range(100))


@pytest.fixture
def frequent_thread_switches():
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(5)
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*thresholds)


def test_headers_read_by_concurrent_threads_all_parse(frequent_thread_switches):
    buffer = io.BytesIO()
    np.savez(buffer, labels=np.arange(10, dtype=np.uint8), erased=np.zeros((3, 4), bool))
    archive_bytes = buffer.getvalue()
    errors = []

    def read_repeatedly() -> None:
        for _ in range(READS_PER_THREAD):
            with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
                for info in archive.infolist():
                    try:
                        read_member(archive, info, 1000)
                    except Exception as error:  # noqa: BLE001 - any error fails the test
                        errors.append(repr(error))
            _FinalizedCycle()

    threads = [threading.Thread(target=read_repeatedly) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
