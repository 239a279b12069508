"""How one invocation runs, from a shell or from `typer.testing.CliRunner` alike.

Both call the command group's ``main``; overriding it here is the one place that decides what
reaches the terminal besides a command's own output: usage errors become one line with exit
2 (Typer would print a boxed panel), and Python warnings are silenced (a numpy RuntimeWarning
is noise in a cron log; the library still warns its own callers).
"""
from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup
# Typer vendors Click; these are its exception classes (no public alias for NoArgsIsHelpError).
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from .errors import INTERNAL, print_error


def usage_message(e: ClickException) -> str:
    """``No such option: --bogus; see 'procalign fit --help'``."""
    ctx = getattr(e, "ctx", None)
    command = ctx.command_path if ctx is not None else "procalign"
    text = e.format_message().rstrip(". ")
    return f"{text}{' ' if text.endswith('?') else '; '}see '{command} --help'"


class ProcalignGroup(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # `--debug` turns them back on (see the app callback)
            code = self._run(args, prog_name, complete_var, **extra)
        if not standalone_mode:
            return code
        sys.exit(code)

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        try:
            # Not standalone: Click hands us its exceptions instead of printing them itself.
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:  # bare `procalign`: the help (Rich has printed it already)
            if e.format_message().strip():
                e.show()
            return e.exit_code
        except ClickException as e:
            print_error(usage_message(e))
            return e.exit_code
        except typer.Abort:
            print_error("aborted")
            return INTERNAL
        # Without standalone mode Click returns the code of a `typer.Exit`, or what the
        # command returned (None: success).
        return result if isinstance(result, int) else 0
