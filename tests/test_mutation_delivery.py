"""Delivery and the journal in-process: destination checks, the lock, commit and discard, resume
decisions, journal contents checked against hashlib and json computed here."""
import errno
import hashlib
import json
import os
import signal
import socket
import threading
import time

import h5py
import numpy as np
import pytest

from procalign.errors import LockedError, OutputError, UsageError
from procalign.formats import SinkSpec
from procalign.formats.hdf5 import H5Sink
from procalign.formats.npy import NpySink
from procalign.formats.parquet import ParquetSink
from procalign.pipeline import delivery as dv
from procalign.pipeline import journal as jn


def digest(row, index):
    """The journal's fingerprint of written row ``index``: sha256 of "index|" and its bytes."""
    return hashlib.sha256(f"{index}|".encode() + np.ascontiguousarray(row).tobytes()).hexdigest()[:32]


# ------------------------------------------------------------------ journal
def sample_reference(path):
    size = path.stat().st_size
    h = hashlib.sha256()
    data = path.read_bytes()
    for k in range(16):
        at = max(0, size - 65536) * k // 15
        h.update(data[at:at + 65536])
    return h.hexdigest()[:32]


@pytest.mark.parametrize("size", [10, 65536, 65537, 3_000_001])
def test_content_sample_reads_sixteen_spread_blocks(tmp_path, size):
    path = tmp_path / "f.bin"
    path.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    assert jn.content_sample(path, size) == sample_reference(path)
    assert jn.SAMPLED_BLOCKS == 16 and jn.BLOCK == 65536


def test_input_identity(tmp_path):
    path = tmp_path / "in.npy"
    path.write_bytes(b"x" * 100)
    st = os.stat(path)
    assert jn.input_identity(tmp_path / "." / "in.npy") == {"input": str(path.resolve()), "size": 100,
                                                            "mtime_ns": st.st_mtime_ns, "sample": sample_reference(path)}


def test_journal_save_read_remove(tmp_path):
    final = tmp_path / "out.npy"
    path = jn.journal_path(final)
    assert path == tmp_path / ".out.npy.procalign-journal" == jn.Journal.path_for(final)
    assert jn.Journal.read(final) is None
    j = jn.Journal(path, {"input": "a", "batch_rows": 3})
    assert (j.rows_done, j.tail) == (0, None)
    j.save(12, "abc")
    assert (j.rows_done, j.tail) == (12, "abc")
    assert json.loads(path.read_text()) == {"identity": {"input": "a", "batch_rows": 3}, "rows_done": 12, "tail": "abc"}
    assert path.read_text() == json.dumps({"identity": {"input": "a", "batch_rows": 3}, "rows_done": 12, "tail": "abc"},
                                          sort_keys=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.npy.procalign-journal"]
    back = jn.Journal.read(final)
    assert (back.path, back.identity, back.rows_done, back.tail) == (path, {"input": "a", "batch_rows": 3}, 12, "abc")
    path.write_text(json.dumps({"identity": {}, "rows_done": "7"}))
    assert jn.Journal.read(final).rows_done == 7 and jn.Journal.read(final).tail is None
    for bad in ("{", "[]", json.dumps({"identity": {}}), json.dumps({"rows_done": 1}),
                json.dumps({"identity": {}, "rows_done": "x"}), json.dumps({"identity": {}, "rows_done": None})):
        path.write_text(bad)
        assert jn.Journal.read(final) is None, bad
    (tmp_path / ".out.npy.procalign-journal.tmp").write_text("left by a kill")
    j.remove()
    assert list(tmp_path.iterdir()) == []
    j.remove()  # nothing there: fine


# ------------------------------------------------------------------ destination checks
def test_paths_beside_the_destination(tmp_path):
    final = tmp_path / "d" / "out.parquet"
    assert dv.partial_path(final) == tmp_path / "d" / ".out.parquet.procalign-partial"
    assert dv.lock_path(final) == tmp_path / "d" / ".out.parquet.procalign-lock"
    (tmp_path / "real.npy").write_bytes(b"")
    os.symlink(tmp_path / "real.npy", tmp_path / "link.npy")
    assert dv.resolve_destination(tmp_path / "link.npy") == tmp_path / "real.npy"
    assert dv.resolve_destination(tmp_path / "real.npy") == tmp_path / "real.npy"
    assert dv.resolve_destination(tmp_path / "new.npy") == tmp_path / "new.npy"


def test_kinds_of_paths(tmp_path):
    assert dv._kind(tmp_path / "none") is None
    (tmp_path / "f").write_bytes(b"")
    assert dv._kind(tmp_path / "f") is None
    assert dv._kind(tmp_path) == "a directory"
    os.mkfifo(tmp_path / "fifo")
    assert dv._kind(tmp_path / "fifo") == "a FIFO (named pipe)"
    assert dv._kind("/dev/null") == "a character device"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    try:
        assert dv._kind(tmp_path / "sock") == "a socket"
    finally:
        s.close()
    os.mknod(tmp_path / "blk", 0o600 | 0o060000, os.makedev(7, 200))
    assert dv._kind(tmp_path / "blk") == "a block device"


def refusal(final, inputs=(), overwrite=False):
    with pytest.raises(OutputError) as e:
        dv.check_destination(final, inputs, overwrite)
    return str(e.value)


def test_check_destination(tmp_path):
    src = tmp_path / "in.npy"
    src.write_bytes(b"data")
    assert refusal(src, [src]) == f"{src}: output path is the same as the input; choose another -o"
    os.link(src, tmp_path / "hard.npy")
    assert "same as the input" in refusal(tmp_path / "hard.npy", [src], overwrite=True)
    os.symlink(src, tmp_path / "sym.npy")
    assert "same as the input" in refusal(tmp_path / "sym.npy", [tmp_path / "other.npy", src], overwrite=True)
    missing = tmp_path / "no" / "out.npy"
    assert refusal(missing) == f"{missing}: directory {tmp_path / 'no'} does not exist; create it first"
    (tmp_path / "dir.npy").mkdir()
    assert refusal(tmp_path / "dir.npy", overwrite=True) == f"{tmp_path / 'dir.npy'}: destination is a directory; give a file name"
    os.mkfifo(tmp_path / "p.npy")
    assert refusal(tmp_path / "p.npy", overwrite=True) == (f"{tmp_path / 'p.npy'}: destination is a FIFO (named pipe), "
                                                         "not a regular file; procalign only replaces regular files, "
                                                         "give a file path")
    os.symlink(tmp_path / "p.npy", tmp_path / "to_fifo.npy")
    assert refusal(tmp_path / "to_fifo.npy", overwrite=True).startswith(f"{tmp_path / 'to_fifo.npy'}: destination is a FIFO")
    assert refusal(tmp_path / "sym.npy") == f"{tmp_path / 'sym.npy'}: destination exists; pass --overwrite to replace it"
    dv.check_destination(tmp_path / "sym.npy", [tmp_path / "x.npy"], overwrite=True)
    dv.check_destination(tmp_path / "fresh.npy", [src, tmp_path / "absent.npy"], overwrite=False)


def test_check_destination_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dv.check_destination(dv.Path("out.npy"), [], overwrite=False)


# ------------------------------------------------------------------ the lock and the temporary file
def test_destination_lock_commit_and_discard(tmp_path):
    final = tmp_path / "out.npy"
    sidecar = tmp_path / "side"
    d = dv.Destination(final, sidecars=[sidecar], fsync=True)
    assert (d.named, d.final, d.temp, d.sidecars) == (final, final, dv.partial_path(final), [sidecar])
    with d:
        assert dv.lock_path(final).exists() and d._lock_fd is not None
        with pytest.raises(LockedError) as e:
            dv.Destination(final).__enter__()
        assert str(e.value) == f"{final}: another procalign run is writing this destination; wait for it or pass --wait"
        d.temp.write_bytes(b"done")
        sidecar.write_bytes(b"s")
        jn.Journal(jn.journal_path(final), {}).save(1)
        before = len(dv.COMMITTED)
        d.commit()
        assert d.committed and dv.COMMITTED[before:] == [final]
        assert final.read_bytes() == b"done" and not d.temp.exists() and not sidecar.exists()
        assert not jn.journal_path(final).exists()
    assert not dv.lock_path(final).exists() and d._lock_fd is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


def test_destination_discards_on_error_and_keeps_on_request(tmp_path):
    final = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), dv.Destination(final) as d:
        d.temp.write_bytes(b"half")
        raise RuntimeError
    assert not d.temp.exists() and not final.exists()
    with dv.Destination(final) as d:
        d.temp.write_bytes(b"half")
        d.keep_partial_on_exit = True
    assert d.temp.read_bytes() == b"half"
    with dv.Destination(final, keep_partial=True) as d:  # a resumable run keeps the stale file
        assert d.temp.read_bytes() == b"half"
        d.keep_partial_on_exit = True
    with dv.Destination(final) as d:  # otherwise it is removed before writing starts
        assert not d.temp.exists()


def test_commit_refuses_a_destination_that_appeared(tmp_path):
    final = tmp_path / "out.npy"
    with dv.Destination(final, fsync=False) as d:
        d.temp.write_bytes(b"new")
        final.write_bytes(b"someone else's")
        with pytest.raises(OutputError) as e:
            d.commit()
        assert str(e.value) == f"{final}: destination appeared while writing; pass --overwrite to replace it"
    assert final.read_bytes() == b"someone else's"
    with dv.Destination(final, overwrite=True, fsync=False) as d:
        d.temp.write_bytes(b"new")
        d.commit()
    assert final.read_bytes() == b"new"


def test_commit_through_a_symlink_replaces_its_target(tmp_path):
    (tmp_path / "real.npy").write_bytes(b"old")
    os.symlink(tmp_path / "real.npy", tmp_path / "link.npy")
    with dv.Destination(tmp_path / "link.npy", overwrite=True) as d:
        assert d.temp == tmp_path / ".real.npy.procalign-partial"
        d.temp.write_bytes(b"new")
        d.commit()
    assert os.path.islink(tmp_path / "link.npy") and (tmp_path / "real.npy").read_bytes() == b"new"


def test_wait_takes_the_lock_once_the_holder_leaves(tmp_path):
    final = tmp_path / "out.npy"
    order = []
    first = dv.Destination(final).__enter__()

    def second():
        with dv.Destination(final, wait=True, overwrite=True):
            order.append("second in")

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert order == [] and t.is_alive()  # blocked on the lock
    order.append("first out")
    first.__exit__(None, None, None)  # unlinks the lock file: the waiter must lock the new one
    t.join(10)
    assert order == ["first out", "second in"] and not t.is_alive()
    assert not dv.lock_path(final).exists()


def test_lock_errors_other_than_contention_propagate(tmp_path):
    (tmp_path / ".out.npy.procalign-lock").mkdir()  # cannot be opened for writing
    with pytest.raises(OSError) as e:
        dv.Destination(tmp_path / "out.npy").__enter__()
    assert not isinstance(e.value, LockedError)


def blocked():
    return signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_signals_are_deferred_in_the_main_thread_only():
    before = blocked()
    with dv.signals_deferred():
        assert {signal.SIGINT, signal.SIGTERM} <= blocked()
    assert blocked() == before
    seen = []

    def other():
        with dv.signals_deferred():
            seen.append(signal.SIGINT in blocked())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [False]


# ------------------------------------------------------------------ Delivery: write, journal, resume
SPEC = SinkSpec(3, np.dtype(np.float32), 20)
IDENTITY = {"input": "x", "batch_rows": 5}


def rows(seed=0):
    return np.random.default_rng(seed).normal(size=(20, 3)).astype(np.float32)


def die(delivery):
    """What SIGKILL leaves: the sink's handles and the lock released, nothing cleaned up."""
    delivery.sink.abort()
    os.close(delivery.destination._lock_fd)


def test_policy_defaults():
    assert dv.DeliveryPolicy() == dv.DeliveryPolicy(False, False, False, False)


def test_delivery_writes_journals_and_commits(tmp_path):
    final, data = tmp_path / "out.npy", rows()
    d = dv.Delivery(final, [], NpySink, SPEC, IDENTITY)
    assert d.destination.fsync is False and d.destination.sidecars == []
    with d:
        assert d.start == 0 and d.notes == []
        for a in range(0, 20, 5):
            d.write(data[a:a + 5])
            doc = json.loads(jn.journal_path(final).read_text())
            assert doc == {"identity": IDENTITY, "rows_done": a + 5, "tail": digest(data[a + 4], a + 4)}
        d.commit()
    assert np.array_equal(np.load(final), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
    assert dv.row_digest(data[3], 3) == digest(data[3], 3)


def test_an_empty_chunk_journals_no_tail(tmp_path):
    final = tmp_path / "out.h5"
    with dv.Delivery(final, [], H5Sink, SinkSpec(3, np.dtype(np.float32), None), IDENTITY) as d:
        d.write(rows()[:4])
        d.write(rows()[:0])
        assert json.loads(jn.journal_path(final).read_text()) == {"identity": IDENTITY, "rows_done": 4, "tail": None}
        d.commit()
    with h5py.File(final) as f:
        assert np.array_equal(f["embeddings"][()], rows()[:4])


def test_parquet_delivery_lists_its_footer_sidecar(tmp_path):
    d = dv.Delivery(tmp_path / "o.parquet", [], ParquetSink, SPEC, IDENTITY, dv.DeliveryPolicy(fsync=True))
    assert d.destination.sidecars == [tmp_path / ".o.parquet.procalign-partial.footers"] and d.destination.fsync


def killed_after(tmp_path, final, chunks, sink=NpySink, spec=SPEC, data=None):
    data = rows() if data is None else data
    d = dv.Delivery(final, [], sink, spec, IDENTITY)
    d.__enter__()
    for a in range(0, 5 * chunks, 5):
        d.write(data[a:a + 5])
    die(d)
    return data


@pytest.mark.parametrize("sink,name", [(NpySink, "out.npy"), (ParquetSink, "out.parquet")])
def test_resume_continues_and_is_byte_identical(tmp_path, sink, name):
    data = rows()
    ref = tmp_path / f"ref_{name}"
    with dv.Delivery(ref, [], sink, SPEC, IDENTITY) as d:
        for a in range(0, 20, 5):
            d.write(data[a:a + 5])
        d.commit()
    final = tmp_path / name
    killed_after(tmp_path, final, 2, sink)
    with dv.Delivery(final, [], sink, SPEC, IDENTITY, dv.DeliveryPolicy(resume=True)) as d:
        assert d.start == 10 and d.notes == ["resumed after row 10"] and d.journal.rows_done == 10
        for a in range(d.start, 20, 5):
            d.write(data[a:a + 5])
        d.commit()
    assert final.read_bytes() == ref.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, f"ref_{name}"])


def test_resume_with_nothing_to_resume(tmp_path):
    final = tmp_path / "out.npy"
    with dv.Delivery(final, [], NpySink, SPEC, IDENTITY, dv.DeliveryPolicy(resume=True)) as d:
        assert d.start == 0 and d.notes == ["nothing to resume; started from the beginning"]
    killed_after(tmp_path, final, 2)
    dv.partial_path(final).unlink()  # a journal without its partial file
    with dv.Delivery(final, [], NpySink, SPEC, IDENTITY, dv.DeliveryPolicy(resume=True)) as d:
        assert d.start == 0 and d.notes == ["nothing to resume; started from the beginning"]
        assert not jn.journal_path(final).exists() or json.loads(jn.journal_path(final).read_text())["rows_done"] == 0


def test_resume_with_another_identity_is_refused_and_keeps_the_partial_file(tmp_path):
    final = tmp_path / "out.npy"
    killed_after(tmp_path, final, 2)
    other = {"input": "y", "batch_rows": 6, "extra": 1}
    with pytest.raises(UsageError) as e:
        dv.Delivery(final, [], NpySink, SPEC, other, dv.DeliveryPolicy(resume=True)).__enter__()
    assert str(e.value) == (f"{final}: the partial output was made with a different batch_rows, extra, input; rerun with "
                            "the same input, transform and options, or without --resume")
    assert dv.partial_path(final).exists() and jn.journal_path(final).exists()
    assert not dv.lock_path(final).exists()  # the lock is released on the way out


def test_resume_refuses_a_partial_file_that_disagrees_with_the_journal(tmp_path):
    final = tmp_path / "out.npy"
    killed_after(tmp_path, final, 2)
    with open(dv.partial_path(final), "r+b") as f:  # the last journalled row changed on disk
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        f.seek(f.tell() + 9 * 12)
        f.write(b"\0" * 12)
    with dv.Delivery(final, [], NpySink, SPEC, IDENTITY, dv.DeliveryPolicy(resume=True)) as d:
        assert d.start == 0 and d.journal.rows_done == 0
        assert d.notes == ["could not resume (the partial file's row 9 is not the one the journal recorded); "
                           "started from the beginning"]
        data = rows()
        for a in range(0, 20, 5):
            d.write(data[a:a + 5])
        d.commit()
    assert np.array_equal(np.load(final), rows())


@pytest.mark.parametrize("spec,reason", [
    (SinkSpec(3, np.dtype(np.float32), None), "the partial file holds 5 rows, not 15"),  # a stream: cut to size
    (SPEC, "the partial file's row 14 is not the one the journal recorded"),  # allocated whole: row 14 unwritten
])
def test_resume_of_a_journal_that_claims_too_much(tmp_path, spec, reason):
    final = tmp_path / "out.npy"
    killed_after(tmp_path, final, 1, spec=spec)
    j = jn.Journal.read(final)
    j.save(15, j.tail)
    with dv.Delivery(final, [], NpySink, spec, IDENTITY, dv.DeliveryPolicy(resume=True)) as d:
        assert d.start == 0 and d.notes == [f"could not resume ({reason}); started from the beginning"]
        assert d.sink.written == 0


class FullDisk(NpySink):
    """An npy sink on a disk that fills up: the OS error the delivery must name."""

    def write(self, embeddings, extra=None, ids=None):
        raise OSError(errno.ENOSPC, "No space left on device")


class FullAtTheEnd(NpySink):
    def finish(self):
        raise OSError("no strerror here")


def test_disk_errors_name_the_destination(tmp_path):
    final = tmp_path / "out.npy"
    with pytest.raises(OutputError) as e, dv.Delivery(final, [], FullDisk, SPEC, IDENTITY) as d:
        d.write(rows()[:5])
    assert str(e.value) == f"{final}: writing failed (No space left on device); free some space or check the disk"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(OutputError) as e, dv.Delivery(final, [], FullAtTheEnd, SPEC, IDENTITY) as d:
        for a in range(0, 20, 5):
            d.write(rows()[a:a + 5])
        d.commit()
    assert str(e.value) == f"{final}: writing failed (no strerror here); free some space or check the disk"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class Unopenable(NpySink):
    def __init__(self, path, spec, resume_rows=0):
        raise OSError(errno.EACCES, "Permission denied")


def test_an_error_while_opening_the_sink_releases_the_destination(tmp_path):
    final = tmp_path / "out.npy"
    with pytest.raises(OSError, match="Permission denied"):
        dv.Delivery(final, [], Unopenable, SPEC, IDENTITY).__enter__()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with dv.Delivery(final, [], NpySink, SPEC, IDENTITY) as d:  # the lock was released
        assert d.start == 0


def test_relative_destinations_stay_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert dv.resolve_destination(dv.Path("sub/out.npy")) == dv.Path("sub/out.npy")


def test_lock_file_mode_and_a_lock_file_removed_meanwhile(tmp_path):
    src = tmp_path / "in.npy"
    src.write_bytes(b"x")
    final = tmp_path / "out.npy"
    old = os.umask(0o022)
    try:
        d = dv.Destination(final, inputs=[src]).__enter__()
    finally:
        os.umask(old)
    assert d.inputs == [src]
    assert os.stat(dv.lock_path(final)).st_mode & 0o777 == 0o644
    dv.lock_path(final).unlink()  # someone removed it: leaving must not fail
    d.__exit__(None, None, None)
    assert d._lock_fd is None


# ------------------------------------------------------------------ direct deliveries
import contextlib  # noqa: E402
import sqlite3  # noqa: E402

from procalign.formats.jsonl import JsonlSink  # noqa: E402
from procalign.formats.llm_collection import LlmSink  # noqa: E402
from procalign.formats.registry import parse_location  # noqa: E402

LLM_SPEC = SinkSpec(3, np.dtype(np.float32), None, stamp={"space": "minilm"}, name="docs")


def collection(path, name="docs"):
    """(model, [(id, vector)]) of a collection, read with sqlite3 directly."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        if db.execute("SELECT name FROM sqlite_master WHERE name = 'collections'").fetchone() is None:
            return None
        found = db.execute("SELECT id, model FROM collections WHERE name = ?", [name]).fetchone()
        if found is None:
            return None
        rows = db.execute("SELECT id, embedding FROM embeddings WHERE collection_id = ? ORDER BY rowid",
                          [found[0]]).fetchall()
    return found[1], [(i, np.frombuffer(blob, "<f4").tolist()) for i, blob in rows]


def test_delivery_for_picks_direct_deliveries_for_pipes_and_self_atomic_sinks(tmp_path):
    policy = dv.DeliveryPolicy(overwrite=True)
    stdout = dv.delivery_for(parse_location("-"), [], JsonlSink, SPEC, IDENTITY, policy)
    assert type(stdout) is dv.DirectDelivery and stdout.named == dv.Path("-")
    assert (stdout.sink_class, stdout.spec, stdout.policy) == (JsonlSink, SPEC, policy)
    assert stdout.notes == [] and stdout.start == 0 and stdout.sink is None
    db = dv.delivery_for(parse_location(f"{tmp_path}/c.db:docs"), [], LlmSink, LLM_SPEC, IDENTITY)
    assert type(db) is dv.DirectDelivery and db.named == tmp_path / "c.db" and db.policy == dv.DeliveryPolicy()
    src = tmp_path / "in.npy"
    src.write_bytes(b"x")
    file = dv.delivery_for(parse_location(f"{tmp_path}/o.jsonl"), [src], JsonlSink, SPEC, IDENTITY, policy)
    assert type(file) is dv.Delivery and file.named == tmp_path / "o.jsonl" and file.identity == IDENTITY
    assert file.destination.inputs == [src] and file.policy == policy and file.spec == SPEC
    assert file.sink_class is JsonlSink and file.destination.overwrite is True


def test_a_direct_delivery_cannot_resume(tmp_path):
    with pytest.raises(UsageError) as e:
        dv.DirectDelivery(dv.Path("-"), JsonlSink, SPEC, dv.DeliveryPolicy(resume=True))
    assert str(e.value) == "-: --resume needs a file destination; this one is written in one go"


def test_a_direct_delivery_to_standard_output(capsysbinary):
    dv.COMMITTED.clear()
    with dv.DirectDelivery("-", JsonlSink, SinkSpec(2, np.dtype(np.float32), None), dv.DeliveryPolicy()) as d:
        assert isinstance(d.sink, JsonlSink) and d.sink.stdout
        d.write(np.array([[1.0, 2.0]], np.float32), ids=np.array([7]))
        assert capsysbinary.readouterr().out == b'{"id": 7, "embedding": [1.0, 2.0]}\n'  # flushed per chunk
        d.write(np.array([[3.0, 4.5]], np.float32), extra=[{"id": "a", "text": "t", "embedding": [0]}])
        d.commit()
    assert capsysbinary.readouterr().out == b'{"id": "a", "text": "t", "embedding": [3.0, 4.5]}\n'
    assert dv.COMMITTED == [dv.Path("-")]
    dv.COMMITTED.clear()


def test_a_direct_delivery_into_a_collection_is_one_transaction(tmp_path):
    db, data = tmp_path / "c.db", rows()[:4]
    with dv.DirectDelivery(db, LlmSink, LLM_SPEC, dv.DeliveryPolicy()) as d:
        d.write(data[:2], ids=np.array(["a", "b"], object))
        d.write(data[2:], ids=np.array(["c", "d"], object))
        assert collection(db) is None  # nothing visible before the commit
        d.commit()
    assert collection(db) == ("minilm", [(k, r.tolist()) for k, r in zip("abcd", data)])
    assert dv.COMMITTED[-1] == db
    dv.COMMITTED.clear()
    with pytest.raises(OutputError, match="collection 'docs' exists; pass --overwrite to replace it"):
        dv.DirectDelivery(db, LlmSink, LLM_SPEC, dv.DeliveryPolicy()).__enter__()
    with dv.DirectDelivery(db, LlmSink, LLM_SPEC, dv.DeliveryPolicy(overwrite=True)) as d:
        d.write(data[:1], ids=np.array(["z"], object))
        d.commit()
    assert collection(db) == ("minilm", [("z", data[0].tolist())])
    dv.COMMITTED.clear()


def test_a_failed_direct_delivery_rolls_back_and_propagates(tmp_path):
    db = tmp_path / "c.db"
    dv.COMMITTED.clear()
    with pytest.raises(RuntimeError, match="^stop$"):
        with dv.DirectDelivery(db, LlmSink, LLM_SPEC, dv.DeliveryPolicy()) as d:
            d.write(rows()[:2], ids=np.array(["a", "b"], object))
            raise RuntimeError("stop")
    assert d.sink._db is None and collection(db) is None and dv.COMMITTED == []
    nothing = dv.DirectDelivery(db, LlmSink, LLM_SPEC, dv.DeliveryPolicy())
    assert nothing.__exit__(RuntimeError, RuntimeError("x"), None) is False  # never entered: no sink


class FullPipe(JsonlSink):
    def flush(self):
        raise OSError(errno.EPIPE, "Broken pipe")


def test_direct_delivery_disk_errors_name_the_destination(tmp_path):
    final = tmp_path / "o.jsonl"
    with pytest.raises(OutputError) as e, dv.DirectDelivery(final, FullPipe, SPEC, dv.DeliveryPolicy()) as d:
        d.write(rows()[:2])
    assert str(e.value) == f"{final}: writing failed (Broken pipe); free some space or check the disk"
    assert d.sink._file is None  # aborted: the file is closed
