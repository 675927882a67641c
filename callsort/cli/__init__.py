"""The ``callsort`` command: a thin Typer layer over plain functions.

Exit codes: 0 every recording labelled; 1 some recordings failed (tables are
still written); 2 usage error (bad option, path or model); 3 another run holds
the output folder's lock; 70 internal error.

:data:`app` and :func:`main` live in :mod:`callsort.cli.app`; the commands are
plain functions with Typer options in :mod:`~callsort.cli.labelling`,
:mod:`~callsort.cli.training`, :mod:`~callsort.cli.adapting` and
:mod:`~callsort.cli.analyst`, registered here.
"""

from __future__ import annotations

from callsort.cli.adapting import adapt
from callsort.cli.analyst import agreement, export, info, report, summary
from callsort.cli.app import app, main
from callsort.cli.labelling import label
from callsort.cli.training import evaluate, train

_COMMANDS = (label, train, evaluate, adapt, info, report, summary, export, agreement)
for _command in _COMMANDS:  # in the order --help lists them
    app.command()(_command)
del _command, _COMMANDS

__all__ = ["app", "label", "main"]
