"""Where part files live: the local disk, or object storage through fsspec (``s3://``, ``gs://``, ...).

The format modules read and write local files only. A part on object storage is fetched into
a local directory before it is read (`Storage.fetch`), and a finished local file is published
under a temporary key and then moved to its final key (`Storage.publish`), so a reader listing
the bucket sees either no part or the complete one. Everything procalign does with a remote
filesystem goes through this module.

A reference (``ref``) is a local path or a URL, as text. Credentials and the endpoint come from
the filesystem's own configuration (for S3: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, profiles) or from ``options`` (``--storage-options``), passed to
fsspec unchanged.

Notes
-----
Staging costs local disk space of one part per part being processed at once, and one transfer
each way; a remote part's identity is its size and ETag (or modification time), which is what
object stores offer without reading the data.
"""
from __future__ import annotations

import glob
import json
import os
import posixpath
import shutil
from pathlib import Path

from ..errors import InputError, OutputError, UsageError

STAMP_SIDECAR = ".procalign.json"  # the .npy stamp beside its file (see npy.py)
GLOB_CHARS = "*?["


def is_url(text: str) -> bool:
    return "://" in str(text) and not str(text).startswith("file://")


def has_glob(text: str) -> bool:
    return any(c in str(text) for c in GLOB_CHARS)


def parse_options(text: str | None) -> dict:
    """``--storage-options`` as a dict (a JSON object)."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--storage-options is not valid JSON ({e}); give an object like "
                         "'{\"endpoint_url\": \"http://host:9000\"}'") from None
    if not isinstance(options, dict):
        raise UsageError(f"--storage-options must be a JSON object, got {type(options).__name__}")
    return options


class Storage:
    """Local files and fsspec filesystems behind one small interface of references."""

    def __init__(self, options: dict | None = None):
        self.options = dict(options or {})

    def _fs(self, ref: str):
        try:
            import fsspec
            return fsspec.core.url_to_fs(ref, **self.options)
        except ImportError as e:
            scheme = str(ref).split("://")[0]
            extra = "procalign[s3]" if scheme in ("s3", "s3a") else f"the fsspec package for {scheme}://"
            raise UsageError(f"reading {scheme}:// needs {e.name or 'fsspec'}; install {extra}", ref) from None

    def expand(self, text: str) -> list[str]:
        """The part files a path names: the file itself, a directory's files or a glob's matches
        (sorted, hidden files left out)."""
        if not is_url(text):
            found = glob.glob(text) if has_glob(text) else \
                [os.path.join(text, n) for n in os.listdir(text)] if os.path.isdir(text) else [text]
            return sorted(p for p in found if os.path.isfile(p) and not os.path.basename(p).startswith("."))
        fs, path = self._fs(text)
        try:
            if has_glob(path):
                found = fs.glob(path)
            elif fs.isdir(path):
                found = fs.ls(path, detail=False)
            else:
                found = [path] if fs.isfile(path) else []
        except (OSError, ValueError) as e:
            raise InputError(f"cannot list it ({e}); check the URL, the endpoint and the credentials", text) from None
        files = sorted(p for p in found if not posixpath.basename(p.rstrip("/")).startswith(".") and fs.isfile(p))
        return [fs.unstrip_protocol(p) for p in files]

    def remote_identity(self, ref: str) -> dict:
        """What identifies a remote part's content for a resume, without reading it."""
        fs, path = self._fs(ref)
        info = fs.info(path)
        version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return {"input": ref, "size": int(info.get("size") or 0), "version": str(version)}

    def exists(self, ref: str) -> bool:
        if not is_url(ref):
            return os.path.exists(ref)
        fs, path = self._fs(ref)
        return fs.exists(path)

    def size(self, ref: str) -> int | None:
        try:
            if not is_url(ref):
                return os.path.getsize(ref)
            fs, path = self._fs(ref)
            return int(fs.info(path)["size"])
        except (OSError, KeyError):
            return None

    def fetch(self, ref: str, into: Path) -> Path:
        """A local path holding the part (the part itself when it is local), with its stamp sidecar."""
        if not is_url(ref):
            return Path(ref)
        fs, path = self._fs(ref)
        local = Path(into) / posixpath.basename(path)
        try:
            fs.get(path, str(local))
            if fs.exists(path + STAMP_SIDECAR):
                fs.get(path + STAMP_SIDECAR, str(local) + STAMP_SIDECAR)
        except OSError as e:
            raise InputError(f"cannot download it ({e}); check the URL and the credentials", ref) from None
        return local

    def publish(self, local: Path, ref: str) -> None:
        """Put a finished local file at ``ref``: a temporary key first, then a move, so the final
        key is never partial; the stamp sidecar follows the data, as on a local disk."""
        fs, path = self._fs(ref)
        sides = [(Path(str(local) + STAMP_SIDECAR), path + STAMP_SIDECAR)]
        try:
            for src, dst in [(Path(local), path)] + [s for s in sides if s[0].exists()]:
                temp = posixpath.join(posixpath.dirname(dst), f".{posixpath.basename(dst)}.procalign-partial")
                fs.put(str(src), temp)
                fs.mv(temp, dst)
        except OSError as e:
            raise OutputError(f"cannot upload it ({e}); check the URL, the permissions and the credentials",
                              ref) from None

    def read_json(self, ref: str) -> dict | None:
        try:
            if not is_url(ref):
                return json.loads(Path(ref).read_text())
            fs, path = self._fs(ref)
            with fs.open(path, "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def write_json(self, ref: str, doc: dict) -> None:
        """Write a small JSON document in one piece (a rename locally, one PUT remotely)."""
        text = json.dumps(doc, sort_keys=True)
        if not is_url(ref):
            tmp = Path(ref).with_name(Path(ref).name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, ref)
            return
        fs, path = self._fs(ref)
        fs.pipe_file(path, text.encode())

    def remove(self, ref: str) -> None:
        if not is_url(ref):
            Path(ref).unlink(missing_ok=True)
            return
        fs, path = self._fs(ref)
        if fs.exists(path):
            fs.rm_file(path)

    def make_directory(self, ref: str) -> None:
        """Create a local output directory (its parent must exist); object stores need none."""
        if is_url(ref):
            return
        parent = Path(ref).resolve().parent
        if not parent.is_dir():
            raise OutputError(f"directory {parent} does not exist; create it first", ref)
        if Path(ref).exists() and not Path(ref).is_dir():
            raise OutputError("the input has several parts, so -o must be a directory, and this is a file; "
                              "give a directory", ref)
        os.makedirs(ref, exist_ok=True)


def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if is_url(directory) else os.path.join(directory, name)


def basename(ref: str) -> str:
    return posixpath.basename(ref.rstrip("/")) if is_url(ref) else os.path.basename(ref)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
