"""callsort: label call recordings by the emotion in the voice.

The pipeline, one module per step::

    discover -> decode -> channels -> segment -> features -> model -> tables -> writers

``callsort.run`` ties the steps together for one recording and for a batch;
``callsort.cli`` is the thin command-line layer over it.

The Python API (see the README)::

    import callsort

    segments, calls = callsort.label(["recordings/"])  # DataFrames, nothing written
    data = callsort.read_dataset("reports/")            # tables written by `callsort label`
    model = callsort.load_model()                       # the shipped model and its card

These names are imported on first use, so ``import callsort`` loads nothing
heavy (the command line starts fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callsort.version import __version__

__all__ = ["Dataset", "Model", "__version__", "label", "load_model", "read_dataset"]

# public name -> module that defines it
_LAZY = {
    "label": "callsort.api",
    "read_dataset": "callsort.dataset.reading",
    "Dataset": "callsort.dataset.reading",
    "load_model": "callsort.model.folder",
    "Model": "callsort.model.folder",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from callsort.api import label
    from callsort.dataset.reading import Dataset, read_dataset
    from callsort.model.folder import Model, load_model


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callsort' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
