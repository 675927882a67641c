"""callsort: label call recordings by the emotion in the voice.

The pipeline, one module per step::

    discover -> decode -> channels -> segment -> features -> model -> tables -> writers

``callsort.pipeline`` ties the steps together for one recording and for a batch;
``callsort.cli`` is the thin command-line layer over it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
