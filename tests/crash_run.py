"""Run ``callsort ARGS`` and SIGKILL it at a step of the commit protocol.

``python tests/crash_run.py STEP[:N] ARGS...`` kills the process the N-th time
(default: the first) the dataset reaches ``STEP`` (see
``callsort.dataset.store.reached_step``). The crash points are injected here, by the
tests, into the process they run; the product reads no variable for them.
"""

from __future__ import annotations

import os
import signal
import sys


def crash_at(wanted: str) -> None:
    from callsort.dataset import store as dataset

    step, _, count = wanted.partition(":")
    seen = {"n": 0}

    def reached(name: str) -> None:
        if name != step:
            return
        seen["n"] += 1
        if seen["n"] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)

    dataset.reached_step = reached


if __name__ == "__main__":
    crash_at(sys.argv[1])
    sys.argv = ["callsort", *sys.argv[2:]]
    from callsort.cli import main

    main()
