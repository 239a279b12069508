"""The one place where library errors become exit codes and one-line messages."""
from __future__ import annotations

import contextlib
import signal
import sys

import typer

from ..errors import ProcalignError

INTERNAL = 1
INTERRUPTED = 130
TERMINATED = 143
state = {"debug": False}


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so that temporary files are cleaned up."""


def _on_sigterm(signum, frame):
    raise Terminated()


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"procalign: error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def exit_codes():
    """Run a command body; expected errors print one line on stderr and exit with their code."""
    try:
        yield
    except typer.Exit:
        raise
    except ProcalignError as e:
        if state["debug"]:
            raise
        raise fail(str(e), e.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted; the destination was left untouched", INTERRUPTED) from None
    except Terminated:
        raise fail("terminated; the destination was left untouched", TERMINATED) from None
    except OSError as e:
        if state["debug"]:
            raise
        where = f"{e.filename}: " if e.filename else ""
        raise fail(f"{where}{e.strerror or e}; check the path, free space and permissions", 6) from None
    except Exception as e:  # a bug: say so in one line, traceback only with --debug
        if state["debug"]:
            raise
        raise fail(f"internal error ({type(e).__name__}: {e}); rerun with --debug and report it",
                   INTERNAL) from None


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
