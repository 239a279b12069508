"""The one place where errors become exit codes and one-line messages.

Library errors (`ProcalignError`) carry their exit code; usage errors found while parsing the
command line (unknown option, bad value) arrive here from `entry.ProcalignGroup` and exit 2.
Every message is one line on stderr, ``procalign: error: ...``, with no traceback unless
``--debug``.
"""
from __future__ import annotations

import contextlib
import re
import signal
import sys

import typer

from ..errors import ProcalignError

INTERNAL = 1
DESTINATION = 6
INTERRUPTED = 130
TERMINATED = 143
state = {"debug": False}


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so that temporary files are cleaned up."""


def _on_sigterm(signum, frame):
    raise Terminated()


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def one_line(message: str) -> str:
    """Library messages may quote multi-line text (an h5py or Arrow error); a log line must stay one line."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip()


def print_error(message: str) -> None:
    # stderr may be a closed pipe too (`2>&1 | head`); the exit code still tells what happened
    with contextlib.suppress(BrokenPipeError):
        typer.echo(f"procalign: error: {one_line(message)}", err=True)


def _what_was_left() -> str:
    """After a signal: whether the output had already been put in place (complete) or not, or for
    a dataset how many of its parts are complete."""
    dataset = sys.modules.get("procalign.pipeline.dataset_apply")
    if dataset is not None and dataset.LEFT:
        return dataset.LEFT[-1]
    delivery = sys.modules.get("procalign.pipeline.delivery")  # not loaded: nothing was delivered
    if delivery is not None and delivery.COMMITTED:
        return f"{delivery.COMMITTED[-1]} had already been written complete"
    return "the destination was left untouched"


def fail(message: str, code: int) -> typer.Exit:
    print_error(message)
    return typer.Exit(code)


def _os_error_message(e: OSError, output) -> str:
    """Name the file even when the OS did not (ENOSPC from a write carries no filename)."""
    if e.filename:
        where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
    elif output is not None:
        where = f"the destination {output}"
    else:
        where = "reading the input files"
    return f"{where}: {e.strerror or e}; check the path, free space and permissions"


@contextlib.contextmanager
def exit_codes(output=None):
    """Run a command body; expected errors print one line on stderr and exit with their code.

    ``output`` is the command's destination, named when an OSError carries no filename.
    """
    try:
        yield
    except typer.Exit:
        raise
    except ProcalignError as e:
        if state["debug"]:
            raise
        raise fail(str(e), e.exit_code) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; {_what_was_left()}", INTERRUPTED) from None
    except Terminated:
        raise fail(f"terminated; {_what_was_left()}", TERMINATED) from None
    except OSError as e:
        if state["debug"]:
            raise
        raise fail(_os_error_message(e, output), DESTINATION) from None
    except Exception as e:  # a bug: say so in one line, traceback only with --debug
        if state["debug"]:
            raise
        raise fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug and report it",
                   INTERNAL) from None


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
