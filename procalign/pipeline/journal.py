"""Progress journal of an apply run, so `apply --resume` can continue after a kill.

Beside the destination's temporary file, ``.NAME.procalign-journal`` records what the partial
output was made from (input identity, transform checksum, options, chunk size) and how many
rows are complete. It is rewritten (atomically) after each chunk has reached the temporary
file, so after SIGKILL it never claims rows that were not written. Resuming with the same chunk
size repeats the same products, so the finished file is byte-identical to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


def journal_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.procalign-journal")


def input_identity(path: Path) -> dict:
    st = os.stat(path)
    return {"input": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class Journal:
    path: Path
    identity: dict
    rows_done: int = 0

    @staticmethod
    def path_for(final: Path) -> Path:
        return journal_path(final)

    @classmethod
    def read(cls, final: Path) -> "Journal | None":
        path = journal_path(final)
        try:
            doc = json.loads(path.read_text())
            return cls(path, doc["identity"], int(doc["rows_done"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, rows_done: int) -> None:
        self.rows_done = rows_done
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"identity": self.identity, "rows_done": rows_done}, sort_keys=True))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
