"""The Typer application, its one exception boundary, and the console-script entry point."""

from __future__ import annotations

import gc
import sys
import time
from typing import Annotated

import typer
from typer.core import TyperGroup

from callsort.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, CallsortError
from callsort.version import __version__


class CommandState:
    """What the whole command line knows: ``--debug``, and whether this process is
    callsort's own (the ``callsort`` command, not a program or a test calling :data:`app`)."""

    debug: bool = False
    own_process: bool = False


state = CommandState()


class CallsortGroup(TyperGroup):
    """The command group; the one place where a :class:`CallsortError` becomes a message
    and its exit code (unless ``--debug``, which shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CallsortError as exc:
            if state.debug:
                raise
            typer.secho(f"callsort: {exc}", err=True, fg="red")
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="callsort",
    cls=CallsortGroup,
    help="Label call recordings by the emotion in the voice (angry, calm, happy, sad).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"callsort {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
) -> None:
    state.debug = debug


def main() -> None:
    """Console-script entry point: no traceback for the user unless ``--debug``.

    This process is callsort's own, so it may be tuned (a program calling
    :data:`app` is not): the garbage collector here; for ``label``, the fork
    server's preloaded modules and LightGBM's lean import
    (:mod:`callsort.cli.labelling`, when ``state.own_process``).
    """
    started = time.perf_counter()
    state.own_process = True
    # Importing numpy, scipy, librosa and LightGBM allocates hundreds of thousands of
    # objects, and the default threshold (700) runs the cyclic collector over them again
    # and again: 8% of labelling one short file. Cycles are still collected, less often.
    gc.set_threshold(50_000, 20, 20)
    try:
        app()
    except KeyboardInterrupt:
        typer.secho("callsort: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if state.debug or "--debug" in sys.argv:
            raise
        typer.secho(
            f"callsort: internal error after {time.perf_counter() - started:.1f} s: "
            f"{type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
            fg="red",
        )
        sys.exit(EXIT_INTERNAL)
    finally:
        # The process is about to exit: spare the collector's passes over every imported
        # object while the interpreter shuts down (0.3 s once librosa is loaded).
        gc.freeze()
