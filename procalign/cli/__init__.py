"""The procalign command line: one module per command, assembled here."""
from __future__ import annotations

import os
import warnings
from typing import Annotated

# Before numpy loads OpenBLAS: its idle worker threads spin for about 2^28 cycles after every
# threaded product before they sleep, and the streaming jobs run their own threads on every core
# (pipeline/cores.py). Measured on a 100k-row apply: 0.15 s of CPU (15% of it) spent spinning.
# 4 (2^4 cycles) lets idle workers sleep at once; a value in the environment is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# Typer checks every option with pydantic, and pydantic looks for plugins among all installed
# packages the first time (reading every package's metadata): 30 ms of a 0.33 s start-up here.
# procalign's options need no plugin; a value in the environment is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from .. import __version__
from .apply import apply
from .compose import compose
from .entry import ProcalignGroup
from .errors import install_signal_handlers, state
from .evaluate import evaluate
from .export import export
from .fit import fit
from .fit_hub import fit_hub
from .inspect import inspect
from .invert import invert
from .threshold import threshold

app = typer.Typer(
    name="procalign", cls=ProcalignGroup,
    help="Align two embedding spaces with orthogonal Procrustes: fit a map from paired anchors, "
         "apply it to files of any size, and measure how good it is.",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"procalign {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and Python warnings instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    state["debug"] = debug
    if debug:  # undoes ProcalignGroup's filter, for this invocation only
        warnings.simplefilter("default")
    install_signal_handlers()


app.command()(fit)
app.command()(apply)
app.command()(inspect)
app.command()(evaluate)
app.command()(export)
app.command()(threshold)
app.command()(invert)
app.command()(compose)
app.command("fit-hub")(fit_hub)


def run() -> None:
    """Console-script entry point."""
    app()
