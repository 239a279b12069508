"""Read -> compute -> write in three threads, so file I/O overlaps the matrix product.

BLAS, file reads and writes, Arrow and HDF5 all release the GIL, so the three stages run
concurrently. Queues hold one item each: with the readers' rings of four buffers this keeps
at most three chunks alive per side, which bounds memory by the chunk size.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run_stages(produce: Iterable, compute: Callable, consume: Callable) -> None:
    """Feed every item of ``produce`` through ``compute`` (calling thread) into ``consume``.

    The first exception in any stage stops the others and is re-raised here.
    """
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=1)
    q_out: queue.Queue = queue.Queue(maxsize=1)
    write_error: list[BaseException] = []

    def reader():
        try:
            for item in produce:
                if not _put(q_in, item, stop):
                    return
            _put(q_in, _DONE, stop)
        except BaseException as e:  # handed to the main thread
            _put(q_in, _Failed(e), stop)

    def writer():
        while True:
            item = q_out.get()
            if item is _DONE:
                return
            try:
                consume(item)
            except BaseException as e:
                write_error.append(e)
                stop.set()
                return

    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    try:
        while True:
            item = q_in.get()
            if item is _DONE:
                break
            if isinstance(item, _Failed):
                raise item.exc
            if write_error:
                break
            result = compute(item)
            if not _put(q_out, result, stop):
                break
    except BaseException:
        stop.set()
        raise
    finally:
        # Let the writer drain (or notice the stop) before returning.
        while threads[1].is_alive():
            try:
                q_out.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                if stop.is_set():
                    try:
                        q_out.get_nowait()
                    except queue.Empty:
                        pass
        threads[1].join()
        stop.set()
        threads[0].join(timeout=5)
    if write_error:
        raise write_error[0]
