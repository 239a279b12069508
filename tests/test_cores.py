"""The per-chunk math on every core: pieces, order, errors, the BLAS limit, and results that
do not depend on how many cores ran them."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from procalign.math.affine import AffineMap, NonFiniteRows
from procalign.math.stats import AlignmentStats, NonFiniteInput
from procalign.pipeline.cores import CorePool
from procalign.pipeline.stream import map_arrays


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("n", [0, 1, 1023, 1024, 1025, 5000, 20481])
def test_spans_cover_every_row_once_in_nearly_equal_pieces(n):
    spans = CorePool(threads=2, piece_rows=1024).spans(n)
    covered = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.array([], int)
    assert np.array_equal(covered, np.arange(n))
    sizes = [b - a for a, b in spans]
    assert all(0 < s <= 1024 for s in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_results_come_back_in_piece_order_and_the_first_error_wins():
    with CorePool(threads=3, piece_rows=10) as pool:
        assert pool.run(lambda a, b: (a, b), 35) == [(0, 8), (8, 17), (17, 26), (26, 35)]

        def fail_late(a, b):
            if a >= 17:
                raise ValueError(f"piece at {a}")
            return a
        with pytest.raises(ValueError, match="piece at 17"):
            pool.run(fail_late, 35)


def test_blas_is_single_threaded_inside_and_restored_after():
    before = blas_threads()
    with CorePool(threads=2):
        assert all(t == 1 for t in blas_threads())
    assert blas_threads() == before


def test_statistics_in_pieces_equal_one_batch_and_name_rows_of_the_whole_chunk():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5000, 7)) + 40.0
    y = rng.normal(size=(5000, 5)) - 9.0
    whole = AlignmentStats.from_batch(x, y, with_gram=True)
    with CorePool(threads=2, piece_rows=700) as pool:
        pieces = AlignmentStats.from_pieces(x, y, True, pool.run)
        x[4321, 2] = np.nan
        with pytest.raises(NonFiniteInput) as caught:
            AlignmentStats.from_pieces(x, y, True, pool.run)
    assert pieces.n == whole.n
    for a, b in [(pieces.comoment, whole.comoment), (pieces.gram_source, whole.gram_source),
                 (pieces.gram_target, whole.gram_target), (pieces.mean_source, whole.mean_source)]:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    assert list(caught.value.source_rows) == [4321]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_mapping_on_any_number_of_cores_matches_the_formula(threads):
    rng = np.random.default_rng(threads)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    affine = AffineMap(q, rng.normal(size=6), rng.normal(size=6), 1.5)
    x = rng.normal(size=(3001, 6)).astype(np.float32)
    expected = 1.5 * (x.astype(np.float64) - affine.source_mean) @ q + affine.target_mean
    from procalign.pipeline import stream
    mapper = stream.BatchMapper(affine, np.float32, np.float32, 3001, threads=threads)
    mapper.cores.piece_rows = 256
    got = []
    stream.map_stream(stream.batches_of([x]), mapper, lambda out, _b: got.append(out.copy()))
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)
    x[2999, 1] = np.inf
    with pytest.raises(NonFiniteRows, match="row 2999"):
        map_arrays(affine, [x[:1000], x[1000:]])


@pytest.mark.parametrize("given,expected", [(None, "4"), ("12", "12")])
def test_the_cli_lets_idle_blas_threads_sleep_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    code = "import os, procalign.cli, numpy; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr
