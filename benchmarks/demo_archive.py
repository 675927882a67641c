"""Demo-call agreement of a model trained with archive standardisation, by the sample its
archive statistics come from (issue 12 item 4; ACCURACY.md "Normalisation that travels").

    python benchmarks/demo_archive.py --model MODEL_DIR

MODEL_DIR is a model folder whose card carries ``archive_standardisation`` (e.g. one made
by ``callsort train`` with ``TrainingConfig(archive_standardisation=True)``). Every run goes
through ``callsort label`` on the demo calls (8 kHz mu-law files), with the statistics
callsort computes itself (all of the demo's channels) or imposed with
``--archive-statistics``: the customer channels only (every emotion), the agent channels
only (calm throughout), unshrunk, or the training population itself. Writes
benchmarks/results/demo-archive.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from readme_examples import _read, demo_agreement  # noqa: E402

from callsort.features.archive import ArchiveStatistics, archive_statistics, shrunk  # noqa: E402
from callsort.model.folder import load_model  # noqa: E402
from callsort.run.analysis import recording_features  # noqa: E402
from callsort.settings import AnalysisSettings  # noqa: E402

SAMPLES = REPO / "sample_recordings"
AGENT = "left"  # the demo calls put the agent on the left channel


def label(model: Path, out: Path, statistics: ArchiveStatistics | None) -> float:
    command = ["callsort", "label", str(SAMPLES), "--out", str(out), "-q", "--model", str(model)]
    if statistics is not None:
        path = out.parent / f"{out.name}.json"
        path.write_text(json.dumps(statistics.to_dict()))
        command += ["--archive-statistics", str(path)]
    subprocess.run(command, check=True)
    truth = pd.read_csv(SAMPLES / "ground_truth.csv")
    return demo_agreement(_read(out, "segments"), truth)["agreement"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/demo-archive.json")
    args = parser.parse_args()
    model = load_model(args.model)
    population, weight = model.archive_population, model.archive_prior_weight
    if population is None:
        parser.error(f"{args.model} does not standardise per archive")
    channels: dict[str, list[np.ndarray]] = {"agent": [], "customer": [], "all": []}
    for path in sorted(SAMPLES.iterdir()):
        if path.suffix not in (".wav", ".flac"):
            continue
        found = recording_features(
            path, feature_settings=model.feature_settings, settings=AnalysisSettings()
        )
        for name, X in zip(found.names, found.features, strict=True):
            channels["agent" if name == AGENT else "customer"].append(X)
            channels["all"].append(X)
    own = {who: archive_statistics(np.concatenate(parts)) for who, parts in channels.items()}
    runs = {
        "computed by callsort (all channels, shrunk)": None,
        "all channels, not shrunk": own["all"],
        "customer channels only (every emotion), shrunk": shrunk(
            own["customer"], population=population, weight=weight
        ),
        "agent channels only (calm throughout), shrunk": shrunk(
            own["agent"], population=population, weight=weight
        ),
        "the training population": ArchiveStatistics(population.mean, population.var, 1.0),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (what, statistics) in enumerate(runs.items()):
            results[what] = label(args.model, Path(tmp) / f"run{i}", statistics)
            print(f"{what}: {results[what]:.1%}", flush=True)
    args.out.write_text(
        json.dumps(
            {
                "what": "demo-call agreement by the sample the archive statistics come from",
                "command": "python benchmarks/demo_archive.py --model MODEL_DIR",
                "model_version": model.version,
                "prior_weight": weight,
                "segments": {who: int(len(np.concatenate(p))) for who, p in channels.items()},
                "agreement": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
