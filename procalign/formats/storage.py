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

import contextlib
import glob
import json
import os
import posixpath
import shutil
from pathlib import Path

from ..errors import InputError, OutputError, ProcalignError, UsageError

STAMP_SIDECAR = ".procalign.json"  # the .npy stamp beside its file (see npy.py)
GLOB_CHARS = "*?["
# the fsspec implementation each protocol needs (fsspec names it only by its import name)
PACKAGES = {"s3": "procalign[s3] (s3fs)", "s3a": "procalign[s3] (s3fs)", "gs": "gcsfs", "gcs": "gcsfs",
            "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "adl": "adlfs"}
# An endpoint that does not answer fails in seconds rather than after botocore's retries
# (measured on a refused port: 4 s instead of 6 to 15 s); options given by the user win.
S3_DEFAULTS = {"config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 2}}}


def is_url(text: str) -> bool:
    return "://" in str(text) and not str(text).startswith("file://")


def local_path(text: str) -> str:
    """``file:///data/dump/`` is the local path ``/data/dump/``; anything else is left as it is."""
    return text[len("file://"):] if str(text).startswith("file://") else text


def scheme_of(ref: str) -> str:
    return str(ref).split("://")[0]


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
        scheme = scheme_of(ref)
        options = {**S3_DEFAULTS, **self.options} if scheme in ("s3", "s3a") else self.options
        try:
            import fsspec
            return fsspec.core.url_to_fs(ref, **options)
        except ImportError as e:
            raise UsageError(f"{scheme}:// needs the package {e.name or 'fsspec'}; install "
                             f"{PACKAGES.get(scheme, e.name or 'fsspec')}", ref) from None
        except ValueError as e:
            if "protocol not known" not in str(e).lower():
                raise
            raise UsageError(f"unknown protocol {scheme}://; give a local path, file://, or a protocol of fsspec "
                             "(s3://, gs://, az://, ...)", ref) from None

    @contextlib.contextmanager
    def _errors(self, ref: str, error: type, doing: str):
        """Turn what a filesystem raises (botocore, aiohttp, OSError...) into one typed line."""
        try:
            yield
        except ProcalignError:
            raise
        except Exception as e:
            translated = self._translated(e, ref, error, doing)
            if translated is e:  # not a storage error: a bug, reported as one
                raise
            raise translated from None

    def _translated(self, e: Exception, ref: str, error: type, doing: str) -> Exception:
        kinds = {c.__name__ for c in type(e).__mro__}
        if kinds & {"NoCredentialsError", "PartialCredentialsError"}:
            return error(f"cannot {doing} it: no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                         "(or a profile), or give key and secret in --storage-options", ref)
        if kinds & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"} or \
                isinstance(e, (ConnectionError, TimeoutError)):
            return error(f"cannot {doing} it: the endpoint does not answer ({e}); check AWS_ENDPOINT_URL or "
                         "endpoint_url in --storage-options, and the network", ref)
        if isinstance(e, TypeError) and self.options:
            return UsageError(f"--storage-options holds an option the {scheme_of(ref)}:// filesystem does not "
                              f"take ({e}); fix or drop it", ref)
        if isinstance(e, OSError) or kinds & {"BotoCoreError", "ClientError"}:
            return error(f"cannot {doing} it ({e}); check the URL, the endpoint, the permissions and the "
                         "credentials", ref)
        return e

    def expand(self, text: str) -> list[str]:
        """The part files a path names: the file itself, a directory's files or a glob's matches
        (sorted, hidden files left out)."""
        if not is_url(text):
            found = glob.glob(text) if has_glob(text) else \
                [os.path.join(text, n) for n in os.listdir(text)] if os.path.isdir(text) else [text]
            return sorted(p for p in found if os.path.isfile(p) and not os.path.basename(p).startswith("."))
        fs, path = self._fs(text)
        with self._errors(text, InputError, "list"):
            if has_glob(path):
                found = fs.glob(path)
            elif fs.isdir(path):
                found = fs.ls(path, detail=False)
            else:
                found = [path] if fs.isfile(path) else []
            files = sorted(p for p in found if not posixpath.basename(p.rstrip("/")).startswith(".") and fs.isfile(p))
        return [fs.unstrip_protocol(p) for p in files]

    def remote_identity(self, ref: str) -> dict:
        """What identifies a remote part's content for a resume, without reading it."""
        fs, path = self._fs(ref)
        with self._errors(ref, InputError, "read"):
            info = fs.info(path)
        version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return {"input": ref, "size": int(info.get("size") or 0), "version": str(version)}

    def exists(self, ref: str) -> bool:
        if not is_url(ref):
            return os.path.exists(ref)
        fs, path = self._fs(ref)
        with self._errors(ref, OutputError, "check"):
            return fs.exists(path)

    def size(self, ref: str) -> int | None:
        if not is_url(ref):
            return os.path.getsize(ref) if os.path.exists(ref) else None
        fs, path = self._fs(ref)
        with self._errors(ref, OutputError, "check"):
            try:
                return int(fs.info(path)["size"])
            except (OSError, KeyError):  # not there
                return None

    def fetch(self, ref: str, into: Path) -> Path:
        """A local path holding the part (the part itself when it is local), with its stamp sidecar."""
        if not is_url(ref):
            return Path(ref)
        fs, path = self._fs(ref)
        local = Path(into) / posixpath.basename(path)
        with self._errors(ref, InputError, "download"):
            fs.get(path, str(local))
            if fs.exists(path + STAMP_SIDECAR):
                fs.get(path + STAMP_SIDECAR, str(local) + STAMP_SIDECAR)
        return local

    def publish(self, local: Path, ref: str) -> None:
        """Put a finished local file at ``ref``: a temporary key first, then a move, so the final
        key is never partial; the stamp sidecar follows the data, as on a local disk."""
        fs, path = self._fs(ref)
        sides = [(Path(str(local) + STAMP_SIDECAR), path + STAMP_SIDECAR)]
        with self._errors(ref, OutputError, "upload"):
            for src, dst in [(Path(local), path)] + [s for s in sides if s[0].exists()]:
                temp = posixpath.join(posixpath.dirname(dst), f".{posixpath.basename(dst)}.procalign-partial")
                fs.put(str(src), temp)
                fs.mv(temp, dst)

    def read_json(self, ref: str) -> dict | None:
        """A small JSON document, or None when it is missing or unreadable."""
        if not is_url(ref):
            try:
                return json.loads(Path(ref).read_text())
            except (OSError, ValueError):
                return None
        fs, path = self._fs(ref)
        with self._errors(ref, OutputError, "read"):
            try:
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
        with self._errors(ref, OutputError, "write"):
            fs.pipe_file(path, text.encode())

    def remove(self, ref: str) -> None:
        if not is_url(ref):
            Path(ref).unlink(missing_ok=True)
            return
        fs, path = self._fs(ref)
        with self._errors(ref, OutputError, "remove"):
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
