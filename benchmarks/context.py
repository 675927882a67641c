"""Segments in the context of their channel, measured in pseudo-calls (issue 17 item 4).

    python benchmarks/context.py                # trains the fold models, then scores
    python benchmarks/context.py --rescore      # scores the saved predictions again
    python benchmarks/context.py --model fast   # the fast model's recipe (no encoder)

The protocol of the default model (``TrainingConfig()``, hand-made features and the
Whisper base embedding, RAVDESS and nEMO; ``--model fast``: without the embedding):
RAVDESS's 6 folds by speaker (nEMO trains
in every fold) and nEMO's 3 folds (RAVDESS trains in every fold), each fold's model
trained exactly as ``benchmarks/accuracy.py --experiment shipped`` trains it. Each test
clip's pseudo-calls of the protocol (``one``, ``mostly``, ``minority``, ``two``: 8
clips of its speaker) are laid out as calls (``callsort.training.calls``): clips
one after another, 3 s apart, every segment labelled by the fold's model, normalised
within the call. The fold's out-of-fold probabilities of every segment of every call
are saved (``--saved``, outside the repository, a file per fold: a stopped run resumes
at the first fold not saved), then scored:

* a temperature for fold k, fitted on the other folds' segments (as the shipped
  model's is fitted on out-of-fold predictions), calibrates fold k's probabilities;
* the context's ``p_stay`` and ``weight`` for fold k are chosen on the other folds'
  calls alone (their speakers trained fold k's model, but fold k's labels never
  choose them): the best macro-F1 over the calls of the bar (``one``, ``mostly``,
  ``two``: clean and telephone), among the candidates that leave the ``two`` calls
  no worse than without context;
* fold k's segments are scored without and with that context: macro-F1 over the
  segments of every call (all 8 clips), per fold then averaged, per kind and for
  the bar's kinds pooled; clips in ``turns`` order and ``shuffled``.

The choice over every fold's calls (both corpora) is reported too (the product's
defaults in ``ContextSettings`` come from the default model's), and fold k scored
with ``ContextSettings()`` as the code has it. Prints a report and writes
``benchmarks/results/context.json`` (``context-fast.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callsort.model.booster import temperature_scaled  # noqa: E402
from callsort.model.context import in_context  # noqa: E402
from callsort.settings import ContextSettings, FeatureSettings  # noqa: E402
from callsort.training.cache import default_cache_dir  # noqa: E402
from callsort.training.calls import ORDERS, call_segments  # noqa: E402
from callsort.training.config import TrainingConfig  # noqa: E402
from callsort.training.crossval import MIX_KINDS  # noqa: E402
from callsort.training.metrics import fit_temperature  # noqa: E402
from callsort.training.protocol import corpus_folds, corpus_protocols, extract  # noqa: E402

CORPORA = [
    REPO.parent / "shared" / "datasets" / "ravdess-speech-16k",
    REPO.parent / "shared" / "datasets" / "nemo-speech-16k",
]
CONFIG = TrainingConfig()
FEATURES = {"default": FeatureSettings(encoder="whisper-base"), "fast": FeatureSettings()}
CONDITIONS = ("clean", "telephone")
BAR_KINDS = ("one", "mostly", "two")
"""The calls of the issue's bar: one emotion throughout, mostly one, two in turn."""
P_STAY = (0.25, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
WEIGHT = (0.5, 0.75, 1.0, 1.25, 1.5)
TARGET = 0.80
VARIANTS = ("without", "with", "with_chosen_on_every_fold", "with_shipped_settings")
"""Each fold scored without context; with the context chosen on the other folds; with the
one chosen on every fold (its own included: in-sample); with ``ContextSettings()``."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=CORPORA, help="corpus folders")
    parser.add_argument("--model", choices=sorted(FEATURES), default="default")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    parser.add_argument(
        "--saved",
        type=Path,
        default=None,
        help="folder for the fold models' predictions, one file per fold, kept so that a "
        "run resumes where it stopped (default: in the feature cache)",
    )
    parser.add_argument("--rescore", action="store_true", help="score the saved predictions")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default by model)")
    args = parser.parse_args()
    suffix = "" if args.model == "default" else f"-{args.model}"
    args.saved = args.saved or default_cache_dir() / "context" / f"pseudo-calls{suffix}"
    args.out = args.out or REPO / "benchmarks" / "results" / f"context{suffix}.json"

    if not args.rescore:
        if not all(d.is_dir() for d in args.data):
            print("no corpus beside the repository: nothing to measure", file=sys.stderr)
            return 0
        predict(args)
    saved, meta = load_saved(args.saved)
    report = score(saved, meta, model=args.model)
    print(render(report))
    write_report(report, args.out)
    return 0


def write_report(report: dict, out: Path) -> None:
    """``report`` as JSON at ``out``, written whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


# --- the fold models' predictions -----------------------------------------------------------


def predict(args) -> None:
    """Train every fold model of the two corpora's speaker folds and save the probabilities
    of every segment of every test pseudo-call."""
    started = time.perf_counter()
    cache = args.cache or default_cache_dir()
    run = extract(
        args.data, CONFIG, jobs=args.jobs, cache_dir=cache, conditions=CONDITIONS,
        feature_settings=FEATURES[args.model],
    )  # fmt: skip
    n_folds = max(len(corpus_folds(run.clips, c, n_folds=CONFIG.n_folds)) for c in corpora(run))
    args.saved.mkdir(parents=True, exist_ok=True)
    for k in range(n_folds):  # fold k of each corpus (that has one), saved as it is done
        path = args.saved / f"fold{k + 1}.npz"
        if path.is_file():
            print(f"  fold {k + 1}: saved before ({path})", flush=True)
            continue
        arrays: dict[str, np.ndarray] = {}

        def keep(protocol: str, _: int, fold, k: int = k, arrays: dict = arrays) -> None:
            corpus = protocol.split(":")[0]
            for cond, kind, order in itertools.product(CONDITIONS, MIX_KINDS, ORDERS):
                segs = call_segments(
                    fold.model,
                    fold.prior,
                    run.clips,
                    fold.features[cond],
                    fold.test,
                    kind=kind,
                    order=order,
                    classes=CONFIG.classes,
                    seed=CONFIG.seed,
                )
                for name, values in asdict(segs).items():
                    arrays[f"{corpus}/{k}/{cond}/{kind}/{order}/{name}"] = values
            print(f"  {corpus}, fold {k + 1}: pseudo-calls labelled "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip

        metrics = corpus_protocols(
            run, CONFIG, jobs=args.jobs, kinds=("folds",), fold_subset=[k], on_model=keep
        )
        protocols = {metrics["headline"]: metrics, **metrics["other_protocols"]}
        clips = {
            name.split(":")[0]: {
                "protocol": name.split(", folds")[0],
                **{
                    cond: {
                        "macro_f1": m[cond]["macro_f1"],
                        "per_kind": {n: v["macro_f1"] for n, v in m[cond]["per_kind"].items()},
                    }
                    for cond in CONDITIONS
                },
            }
            for name, m in protocols.items()
        }
        for corpus, entry in clips.items():
            print(f"  {corpus}, fold {k + 1}: clips "
                  + ", ".join(f"{c} {entry[c]['macro_f1']:.3f}" for c in CONDITIONS)
                  + f" ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
        meta = {"classes": list(CONFIG.classes), "fold": k, "clips": clips,
                "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)


def corpora(run) -> list[str]:
    return list(dict.fromkeys(c.corpus for c in run.clips))


def load_saved(folder: Path) -> tuple[dict, dict]:
    """The saved folds' arrays, and their clip figures averaged over each corpus's folds
    (as the protocol averages per-fold figures)."""
    saved: dict = {}
    per_corpus: dict[str, list[dict]] = {}
    classes, seconds = None, 0.0
    for path in sorted(folder.glob("fold*.npz")):
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        saved.update(arrays)
        classes, seconds = meta["classes"], max(seconds, meta["seconds"])
        for corpus, entry in meta["clips"].items():
            per_corpus.setdefault(corpus, []).append(entry)
    clips = {
        corpus: {
            "protocol": folds[0]["protocol"],
            "n_folds": len(folds),
            **{
                cond: {
                    "macro_f1": round(float(np.mean([f[cond]["macro_f1"] for f in folds])), 4),
                    "per_kind": {
                        kind: round(float(np.mean([f[cond]["per_kind"][kind] for f in folds])), 4)
                        for kind in folds[0][cond]["per_kind"]
                    },
                }
                for cond in CONDITIONS
            },
        }
        for corpus, folds in per_corpus.items()
    }
    return saved, {"classes": classes, "seconds": seconds, "clips": clips}


# --- scoring ---------------------------------------------------------------------------------


class Calls:
    """The saved segments of one corpus, fold, condition, kind and order as padded calls."""

    def __init__(self, saved: dict, key: str, n_classes: int):
        call = saved[f"{key}/call"]
        starts = np.flatnonzero(np.r_[True, call[1:] != call[:-1]])
        lengths = np.diff(np.r_[starts, len(call)])
        self.n_calls, width = len(starts), int(lengths.max(initial=1))
        position = np.arange(len(call)) - np.repeat(starts, lengths)
        row = np.repeat(np.arange(self.n_calls), lengths)
        self.where = (row, position)
        self.raw = saved[f"{key}/proba"].astype(np.float64)
        self.truth = saved[f"{key}/truth"].astype(int)
        self.anchor = saved[f"{key}/anchor"]
        self.gaps = np.zeros((self.n_calls, max(width - 1, 0)))
        inner = position > 0
        self.gaps[row[inner], position[inner] - 1] = saved[f"{key}/gaps_s"][inner]
        self.shape = (self.n_calls, width, n_classes)

    def labels(self, temperature: float, settings: ContextSettings | None) -> np.ndarray:
        proba = temperature_scaled(self.raw, temperature)
        if settings is None:
            return proba.argmax(axis=1)
        padded = np.full(self.shape, 1.0 / self.shape[-1])
        padded[self.where] = proba
        return in_context(padded, settings=settings, gaps_s=self.gaps)[self.where].argmax(axis=1)


def macro_f1(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    f1 = []
    for c in range(n_classes):
        tp = np.sum((predicted == c) & (truth == c))
        denominator = np.sum(predicted == c) + np.sum(truth == c)
        f1.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(f1))


def score(saved: dict, meta: dict, *, model: str) -> dict:
    classes = meta["classes"]
    n = len(classes)
    report: dict = {
        "command": "python benchmarks/context.py"
        + ("" if model == "default" else f" --model {model}"),
        "model": model,
        "protocol": __doc__.split("\n\n", 2)[2].strip(),
        "training_config": f"TrainingConfig() (the {model} model's recipe), features "
        + ("hand-made + whisper-base" if model == "default" else "hand-made"),
        "pseudo_call_layout": {
            "clips": 8,
            "pause_between_clips_s": 3.0,
            "pause_between_segments_of_a_clip_s": 0.4,
        },  # fmt: skip
        "grid": {"p_stay": list(P_STAY), "weight": list(WEIGHT)},
        "half_life_s": ContextSettings().half_life_s,
        "training_seconds": meta["seconds"],
        "corpora": {},
    }
    data = {}
    for corpus, info in meta["clips"].items():
        data[corpus] = [
            {
                (cond, kind, order): Calls(saved, f"{corpus}/{k}/{cond}/{kind}/{order}", n)
                for cond in CONDITIONS
                for kind in MIX_KINDS
                for order in ORDERS
            }
            for k in range(info["n_folds"])
        ]
    candidates = [ContextSettings(p_stay=p, weight=w) for p in P_STAY for w in WEIGHT]

    everything = [fold for folds in data.values() for fold in folds]
    product_t = temperature(everything)
    product = choose(everything, product_t, candidates, n)
    shipped = ContextSettings()
    report["chosen_on_every_fold"] = {
        "p_stay": product["settings"].p_stay,
        "weight": product["settings"].weight,
        "half_life_s": product["settings"].half_life_s,
        "temperature": round(product_t, 4),
        "chosen_on": "every fold's calls of both corpora (clean and telephone)",
        "objective": product["objective"],
    }
    report["shipped_settings"] = asdict(shipped)
    for corpus, folds in data.items():
        per_fold = []
        for k, fold in enumerate(folds):
            others = [f for j, f in enumerate(folds) if j != k]
            t = temperature(others)
            chosen = choose(others, t, candidates, n)
            per_fold.append(
                {
                    "temperature": round(t, 4),
                    "p_stay": chosen["settings"].p_stay,
                    "weight": chosen["settings"].weight,
                    "without": fold_scores(fold, t, None, n),
                    "with": fold_scores(fold, t, chosen["settings"], n),
                    "with_chosen_on_every_fold": fold_scores(fold, t, product["settings"], n),
                    "with_shipped_settings": fold_scores(fold, t, shipped, n),
                }
            )
        report["corpora"][corpus] = {
            "protocol": meta["clips"][corpus]["protocol"],
            "clips": meta["clips"][corpus],
            "segments": summary(per_fold),
            "per_fold": per_fold,
        }
    return report


def temperature(folds: list[dict]) -> float:
    """Fitted on the anchor segments of the folds' calls (each test clip's segments in its
    own pseudo-calls, both conditions): what the shipped model's temperature is fitted on."""
    proba, truth = [], []
    for fold in folds:
        for (_, _, order), calls in fold.items():
            if order == "turns":
                proba.append(calls.raw[calls.anchor])
                truth.append(calls.truth[calls.anchor])
    classes = list(range(proba[0].shape[1]))
    return fit_temperature(np.concatenate(proba), np.concatenate(truth), classes)


def pooled_f1(folds, t, settings, n, kinds, order="turns") -> dict[str, float]:
    """Macro-F1 per condition over the segments of ``kinds``' calls of ``folds`` pooled."""
    out = {}
    for cond in CONDITIONS:
        truth = np.concatenate([f[cond, k, order].truth for f in folds for k in kinds])
        predicted = np.concatenate(
            [f[cond, k, order].labels(t, settings) for f in folds for k in kinds]
        )
        out[cond] = macro_f1(truth, predicted, n)
    return out


def choose(folds, t, candidates, n) -> dict:
    """The candidate with the best bar macro-F1 (clean and telephone averaged) on ``folds``
    among those whose ``two`` calls score no worse than without context."""
    floor = np.mean(list(pooled_f1(folds, t, None, n, ("two",)).values()))
    best = None
    for settings in candidates:
        bar = np.mean(list(pooled_f1(folds, t, settings, n, BAR_KINDS).values()))
        two = np.mean(list(pooled_f1(folds, t, settings, n, ("two",)).values()))
        if two + 1e-9 < floor:
            continue
        key = (round(bar, 4), -abs(settings.weight - 1.0), -settings.p_stay)
        if best is None or key > best[0]:
            best = (key, settings, bar, two)
    _, settings, bar, two = best
    return {
        "settings": settings,
        "objective": {
            "bar_macro_f1": round(bar, 4),
            "two_macro_f1": round(two, 4),
            "two_without": round(float(floor), 4),
        },  # fmt: skip
    }


def fold_scores(fold, t, settings, n) -> dict:
    out = {}
    for order in ORDERS:
        entry = {"bar": pooled_f1([fold], t, settings, n, BAR_KINDS, order)}
        for kind in MIX_KINDS:
            entry[kind] = pooled_f1([fold], t, settings, n, (kind,), order)
        out[order] = entry
    return out


def summary(per_fold: list[dict]) -> dict:
    """Per-fold macro-F1 averaged, for each variant, order, group of calls and condition."""
    out: dict = {}
    for variant in VARIANTS:
        out[variant] = {
            order: {
                group: {
                    cond: round(
                        float(np.mean([f[variant][order][group][cond] for f in per_fold])), 4
                    )
                    for cond in CONDITIONS
                }
                for group in ("bar", *MIX_KINDS)
            }
            for order in ORDERS
        }
    return out


def render(report: dict) -> str:
    d, shipped = report["chosen_on_every_fold"], report["shipped_settings"]
    lines = [
        f"# segments in context ({report['model']} model): pseudo-calls of held-out speakers, "
        "segment macro-F1",
        f"chosen on every fold's calls: p_stay {d['p_stay']}, weight {d['weight']}; "
        f"ContextSettings() of the code: p_stay {shipped['p_stay']}, weight "
        f"{shipped['weight']}, half-life {shipped['half_life_s']} s",
        "",
        "| corpus | order | calls | clean: without | with | with ContextSettings() | "
        "telephone: without | with | with ContextSettings() |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for corpus, entry in report["corpora"].items():
        s = entry["segments"]
        for order in ORDERS:
            for group in ("bar", *MIX_KINDS):
                lines.append(
                    f"| {corpus} | {order} | {group} | "
                    + " | ".join(
                        " | ".join(
                            f"{s[v][order][group][c]:.3f}"
                            for v in ("without", "with", "with_shipped_settings")
                        )
                        for c in CONDITIONS
                    )
                    + " |"
                )
        chosen = [(f["p_stay"], f["weight"]) for f in entry["per_fold"]]
        clips = entry["clips"]
        lines.append(
            f"{corpus}: per-fold choices (p_stay, weight) {chosen}; clip macro-F1 of the same "
            f"fold models: clean {clips['clean']['macro_f1']:.3f}, telephone "
            f"{clips['telephone']['macro_f1']:.3f}"
        )
    ravdess = next(iter(report["corpora"].values()))["segments"]["with"]["turns"]["bar"]
    lines.append(
        f"target: bar macro-F1 >= {TARGET} with context (first corpus): clean "
        f"{ravdess['clean']:.3f}, telephone {ravdess['telephone']:.3f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
