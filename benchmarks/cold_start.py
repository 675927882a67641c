"""How long ``callsort label`` takes for one demo call from a cold start, this checkout
against another revision, side by side.

Each run is a fresh ``python -m callsort label CALL --jobs 1 -q`` in its own process (so
start-up, imports, model load, analysis and writing are all in it), run from this
checkout's folder or from the other revision's (``git archive`` into a temporary folder:
``python -m`` imports the package of the folder it runs from). Rounds alternate between
the two, for each model, so that a busy machine slows both alike; the median of the
rounds is reported. From the repo root:

    python benchmarks/cold_start.py --against 92f8116 --rounds 9

Prints a Markdown table and writes ``benchmarks/results/cold-start.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cold-start.json"
CALL = REPO / "sample_recordings" / "call_01_escalation.wav"
MODELS = ("default", "fast")


def label_once(root: Path, model: str, out: Path) -> float:
    """Wall seconds of one ``callsort label`` of :data:`CALL` run from ``root``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "callsort", "label", str(CALL), "--out", str(out), "-q"]
        + ["--jobs", "1", "--model", model],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"callsort label failed from {root}:\n{done.stderr[-2000:]}")
    return wall


def markdown(results: dict) -> str:
    rows = [
        f"| `callsort label` one {results['call_s']:.0f} s call, `--jobs 1` | "
        f"{results['against']} | this change | faster |",
        "|---|---|---|---|",
    ]
    for model in MODELS:
        r = results["models"][model]
        rows.append(
            f"| `--model {model}` (median of {len(r['this'])}) | {r['against_median_s']:.2f} s | "
            f"{r['this_median_s']:.2f} s | {r['against_median_s'] / r['this_median_s']:.2f}x |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the other revision (git)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import soundfile as sf

    info = sf.info(CALL)
    with tempfile.TemporaryDirectory(prefix="callsort-cold-") as tmp:
        other = Path(tmp) / "other"
        other.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.against], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(other)], input=archive.stdout, check=True)
        roots = {"against": other, "this": REPO}
        walls: dict = {m: {side: [] for side in roots} for m in MODELS}
        for model in MODELS:  # one warm-up each: file caches, bytecode
            for side, root in roots.items():
                label_once(root, model, Path(tmp) / f"warm-{side}-{model}")
        for k in range(args.rounds):
            for model in MODELS:
                for side, root in roots.items():
                    out = Path(tmp) / f"{side}-{model}-{k}"
                    walls[model][side].append(label_once(root, model, out))
            print(f"round {k + 1}/{args.rounds}", flush=True)
    revision = subprocess.run(
        ["git", "rev-parse", "--short", args.against], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    results = {
        "command": f"python benchmarks/cold_start.py --against {args.against} "
        f"--rounds {args.rounds}",
        "against": revision,
        "call": CALL.name,
        "call_s": info.duration,
        "load_average_at_end": list(os.getloadavg()),
        "models": {
            m: {
                "this": w["this"],
                "against": w["against"],
                "this_median_s": float(np.median(w["this"])),
                "against_median_s": float(np.median(w["against"])),
            }
            for m, w in walls.items()
        },
    }
    results["markdown"] = markdown(results)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(results["markdown"])


if __name__ == "__main__":
    main()
