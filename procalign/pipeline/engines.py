"""Where the work on many parts runs: threads on this machine, or an existing Dask cluster.

An engine runs one top-level function over a list of tasks (`run`, results as they finish) and,
for the fit, reduces the task results pairwise in order (`reduce`). The functions are the same
for both engines (`dataset_apply.apply_part`, `distributed_fit.fold_range`), so a part is
processed identically wherever it runs. `dask.distributed` is imported only by `DaskEngine`.

Notes
-----
A Dask worker that dies while it holds a task is replaced and the task rerun elsewhere (the
scheduler's ``allowed-failures``, 3 by default); procalign's own errors are not retried. The
local engine keeps at most ``workers`` parts in flight; each gets ``--memory / workers``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Iterator

from ..errors import UsageError

DEFAULT_LOCAL_WORKERS = 4


class LocalEngine:
    """Parts on this machine, several at once on threads (the math and I/O release the GIL)."""

    name, distributed = "local", False

    def __init__(self, workers: int | None = None):
        # BLAS already spreads one part's product over the cores: a second part at once pays
        # only when there are cores to spare (measured: slower than one at a time on 2 cores)
        self.workers = workers or max(1, min((os.cpu_count() or 1) // 2, DEFAULT_LOCAL_WORKERS))

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, fn: Callable, tasks: list) -> Iterator:
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(tasks)))) as pool:
            futures = [pool.submit(fn, task) for task in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:  # on an error or an interrupt, start no new part
                for future in futures:
                    future.cancel()


class DaskEngine:
    """Tasks on a Dask cluster: the scheduler at ``scheduler``, or a `LocalCluster` of ``workers``
    processes started for this run."""

    name, distributed = "dask", True

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        self.scheduler, self.requested = scheduler, workers
        self.client = self.cluster = None

    def __enter__(self) -> "DaskEngine":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--engine dask needs dask.distributed; install procalign[dask]") from None
        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout="20s")
            else:
                self.cluster = LocalCluster(n_workers=self.requested or 2, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
        except OSError as e:
            self.__exit__()
            raise UsageError(f"cannot reach the Dask scheduler {self.scheduler} ({e}); check --scheduler") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def run(self, fn: Callable, tasks: list) -> Iterator:
        from distributed import as_completed as dask_completed
        futures = self.client.map(fn, tasks, pure=False)
        try:
            for future in dask_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def reduce(self, fn: Callable, merge: Callable, tasks: list, done: Callable[[], None]):
        """``merge`` applied pairwise, in task order, over ``fn(task)`` for every task: a tree
        of depth log2(tasks), each step on a worker. ``done`` is called as each task ends."""
        from distributed import as_completed as dask_completed
        level = self.client.map(fn, tasks, pure=False)
        for future in dask_completed(level):
            if future.status == "error":
                self.client.cancel(level)
                future.result()  # raises the task's error here
            done()
        while len(level) > 1:
            level = [self.client.submit(merge, a, b, pure=False) for a, b in zip(level[::2], level[1::2])] + \
                level[len(level) - len(level) % 2:]
        return level[0].result()


def engine_for(name: str, scheduler: str | None = None, workers: int | None = None):
    if name == "local":
        if scheduler:
            raise UsageError("--scheduler needs --engine dask")
        return LocalEngine(workers)
    if name == "dask":
        return DaskEngine(scheduler, workers)
    raise UsageError(f"--engine {name!r} is not one of local, dask")
