"""Progress journal of an apply run, so `apply --resume` can continue after a kill.

Beside the destination's temporary file, ``.NAME.procalign-journal`` records what the partial
output was made from (input identity, transform checksum, options, chunk size), how many
rows are complete, and a digest of the last complete row, which a resume checks against the
partial file (a journal that claims more than the file holds is not trusted). The input's
identity includes a content fingerprint (`input_identity`), so an input regenerated with the
same size and modification time is not mixed with the old rows. It is rewritten (atomically) after each chunk has reached the temporary
file, so after SIGKILL it never claims rows that were not written. Resuming with the same chunk
size repeats the same products, so the finished file is byte-identical to an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


def journal_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.procalign-journal")


SAMPLED_BLOCKS, BLOCK = 16, 1 << 16


def content_sample(path: Path, size: int) -> str:
    """sha256 of 16 blocks of 64 KiB spread evenly over the file, first and last included:
    cheap (1 MiB read), yet any regenerated file of real embeddings differs in them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for k in range(SAMPLED_BLOCKS):
            f.seek(max(0, size - BLOCK) * k // (SAMPLED_BLOCKS - 1))
            h.update(f.read(BLOCK))
    return h.hexdigest()[:32]


def input_identity(path: Path) -> dict:
    if str(path) == "-":  # standard input: nothing to fingerprint, and nothing to resume
        return {"input": "-"}
    st = os.stat(path)
    return {"input": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sample": content_sample(path, st.st_size)}


@dataclass
class Journal:
    path: Path
    identity: dict
    rows_done: int = 0
    tail: str | None = None  # digest of the last complete row

    @staticmethod
    def path_for(final: Path) -> Path:
        return journal_path(final)

    @classmethod
    def read(cls, final: Path) -> "Journal | None":
        path = journal_path(final)
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc["identity"], dict):
                return None
            return cls(path, doc["identity"], int(doc["rows_done"]), doc.get("tail"))
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def save(self, rows_done: int, tail: str | None = None) -> None:
        self.rows_done, self.tail = rows_done, tail
        tmp = self.path.with_name(self.path.name + ".tmp")
        doc = {"identity": self.identity, "rows_done": rows_done, "tail": tail}
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
