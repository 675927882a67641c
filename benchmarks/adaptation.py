"""Adaptation protocol: how much a model gains from k labelled clips per class of a new domain.

Run from the repository root (features are cached; the two bases are trained once and
kept in ``--bases``, outside the repository):

    python benchmarks/adaptation.py --recipe fast      # hand-made features only
    python benchmarks/adaptation.py --recipe default   # + Whisper-base embedding

For each corpus as the new domain (RAVDESS, nEMO) the base is the recipe
(``TrainingConfig()``, its train conditions, the shipped model's temperature) trained
on the OTHER corpus alone through ``callsort.training.train.train_model``. The new
corpus's speakers are split at random into halves (RAVDESS 12 / 12; nEMO 4 adapt,
5 tested), ``--splits`` times. From the adapting half, k clips per class (nested draws:
the first k of one random order per class) train an adapter on their segments (each
labelled with its clip's emotion) under one audio condition; the other half's clips,
under the same condition, are tested. Audio conditions: the corpus files (clean) and
8 kHz mu-law WAV files read back through ``callsort label``'s decode path (telephone),
features from the feature cache (``callsort.training.cache``, the label path).

Every clip is its own recording and channel, as ``callsort label`` sees a file: its
segments are normalised against its own segments (``Model.channel_inputs``), and a
clip's prediction is the duration-weighted mean of its segments' probabilities (a clip
without speech counts as wrong). Reported: clip-level macro-F1 (mean and
split-to-split std) and segment-level macro-F1.

Adapters (``callsort.model.adapter``), each over a grid of pull strengths lambda:
``head+lgbm`` the linear head re-fitted with an L2 pull toward the base head, LightGBM
unchanged and reading it; ``head-alone`` the same head as the whole classifier;
``residual-emb`` / ``residual-hand`` / ``residual-all``: logits = log p_base + W z + b on
the embedding columns, the hand-made feature columns, or all inputs (pulled toward 0).
Lambda is never chosen on the corpus it is reported for: each corpus's figures use the
lambda that did best (mean clip macro-F1 over k > 0 and both conditions) with the OTHER
corpus as the new domain.

nEMO: :data:`NEMO_PER_SPEAKER_CLASS` clips per speaker and class (drawn once, seed 0),
because the encoder's features of every clip take hours on two shared cores.

Writes ``benchmarks/results/adaptation-<recipe>.json``; ``--table`` prints the README
table from the results files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from callsort.training.config import TrainingConfig  # noqa: E402
from callsort.training.corpora import Clip, find_corpora  # noqa: E402

DATASETS = Path(os.environ.get("CALLSORT_DATASETS", REPO.parent / "shared" / "datasets"))
CORPORA = {"ravdess": "ravdess-speech-16k", "nemo": "nemo-speech-16k"}
NEMO_PER_SPEAKER_CLASS = 30
"""nEMO clips used per speaker and class (of about 85): the encoder features of all 3,076
clips under three conditions take hours on 2 shared cores."""
KS = (0, 5, 10, 25, 50, 100)
LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
CONDITIONS = ("clean", "telephone")
RECIPES = {"default": "whisper-base", "fast": None}
RESULTS = REPO / "benchmarks" / "results"
TARGETS = {"k25_gain": 0.15, "k100_gain": 0.25}


def protocol_clips(corpus: str, *, datasets: Path = DATASETS) -> list[Clip]:
    """The protocol's clips of ``corpus``: all of RAVDESS's 768; for nEMO
    :data:`NEMO_PER_SPEAKER_CLASS` per speaker and class, drawn with seed 0."""
    config = TrainingConfig()
    clips = find_corpora(
        [datasets / CORPORA[corpus]],
        classes=config.classes,
        calm_from_neutral=config.calm_from_neutral,
        neutral_for_missing_calm=config.neutral_for_missing_calm,
    )
    if corpus != "nemo":
        return clips
    rng = np.random.default_rng(0)
    keep = []
    for key in sorted({(c.speaker, c.label) for c in clips}):
        group = [i for i, c in enumerate(clips) if (c.speaker, c.label) == key]
        n = min(NEMO_PER_SPEAKER_CLASS, len(group))
        keep += rng.choice(group, size=n, replace=False).tolist()
    return [clips[i] for i in sorted(keep)]


def features_of(clips, conditions, *, recipe: str, jobs: int):
    from callsort.cli.training import feature_settings
    from callsort.settings import AnalysisSettings
    from callsort.training.cache import clip_features, default_cache_dir

    # the features callsort train gives the recipe's model (the encoder's depth included)
    fs = feature_settings(fast=recipe == "fast")
    return fs, {
        cond: clip_features(
            clips,
            condition=cond,
            settings=AnalysisSettings(),
            feature_settings=fs,
            cache_dir=default_cache_dir(),
            jobs=jobs,
        )
        for cond in conditions
    }


def base_model(recipe: str, new: str, *, bases: Path, jobs: int):
    """The recipe trained on the corpus other than ``new`` (trained once, kept in ``bases``)."""
    from callsort.model.card import shipped_model_dir
    from callsort.model.folder import Model, save_model
    from callsort.settings import AnalysisSettings
    from callsort.training.corpora import default_licence
    from callsort.training.protocol import ProtocolRun
    from callsort.training.train import train_model

    folder = bases / f"{recipe}-without-{new}"
    if (folder / "card.json").is_file():
        return Model.load(folder)
    other = next(c for c in CORPORA if c != new)
    config = TrainingConfig()
    clips = protocol_clips(other)
    conditions = tuple(dict.fromkeys([*CONDITIONS, *config.train_conditions]))
    fs, features = features_of(clips, conditions, recipe=recipe, jobs=jobs)
    from callsort.features.spectral import feature_names

    run = ProtocolRun(clips, features, AnalysisSettings(), fs, feature_names(fs))
    shipped = Model.load(shipped_model_dir(recipe))
    t = time.time()
    classifier, card = train_model(
        run,
        config,
        data_dir=[DATASETS / CORPORA[other]],
        metrics={"temperature": shipped.card.temperature},
        jobs=jobs,
        licence=default_licence(DATASETS / CORPORA[other]),
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_model(classifier, card, folder)
    print(f"trained {folder.name} on {len(clips)} clips in {time.time() - t:.0f} s", flush=True)
    return Model.load(folder)


class Domain:
    """The new corpus's clips under one condition, as the base model sees them."""

    def __init__(self, model, clips, feats):
        self.model = model
        self.classes = model.classes
        index = {c: i for i, c in enumerate(self.classes)}
        self.clip_label = np.array([index[c.label] for c in clips])
        self.speakers = np.array([c.speaker for c in clips])
        inputs = [model.channel_inputs(f.X) for f in feats]
        self.X = np.concatenate(inputs).astype(np.float32)
        self.owner = np.repeat(np.arange(len(clips)), [len(x) for x in inputs])
        self.durations = np.concatenate([f.durations_s for f in feats])
        self.y = self.clip_label[self.owner]
        self.base = model.predict_proba(self.X)

    def rows(self, clip_index: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.owner, clip_index))


def adapter_columns(model, variant: str) -> np.ndarray:
    names = model.card.feature_names
    emb = np.array([i for i, n in enumerate(names) if n.startswith(("enc_", "z_enc_"))], int)
    hand = np.setdiff1d(np.arange(len(names)), emb)
    return {"residual-emb": emb, "residual-hand": hand, "residual-all": np.arange(len(names))}[
        variant
    ]


def variants_of(model) -> list[str]:
    if model.stack.head is None:
        return ["residual-hand"]
    return ["head+lgbm", "head-alone", "residual-emb", "residual-hand", "residual-all"]


def fit_variant(domain: Domain, rows: np.ndarray, variant: str, lam: float):
    """A function giving the adapted probabilities of the given rows."""
    from callsort.model.adapter import fit_adapter, input_standardisation, softmax

    model = domain.model
    n_classes = len(domain.classes)
    X, y = domain.X[rows], domain.y[rows]
    if variant.startswith("head"):
        head = model.stack.head
        adapter = fit_adapter(
            X,
            y,
            kind="head",
            lam=lam,
            columns=head.columns,
            mean=head.mean,
            scale=head.scale,
            n_classes=n_classes,
            coef0=head.coef,
            intercept0=head.intercept,
        )
        if variant == "head-alone":
            return lambda r: softmax(adapter.logits(domain.X[r]))
        adapted = model.with_adapter(adapter)
        return lambda r: adapted.predict_proba(domain.X[r])
    columns = adapter_columns(model, variant)
    mean, scale = input_standardisation(
        model.card.normalisation, n_inputs=model.stack.n_features, X=X
    )
    adapter = fit_adapter(
        X,
        y,
        kind="residual",
        lam=lam,
        columns=columns,
        mean=mean[columns],
        scale=scale[columns],
        n_classes=n_classes,
        base_proba=domain.base[rows],
    )
    adapted = model.with_adapter(adapter)
    return lambda r: adapted.adapter.adjusted(domain.X[r], domain.base[r])


def macro_f1s(domain: Domain, test_clips: np.ndarray, rows: np.ndarray, proba: np.ndarray):
    """Clip-level and segment-level macro-F1 of the test clips."""
    from sklearn.metrics import f1_score

    labels = list(range(len(domain.classes)))
    seg = f1_score(domain.y[rows], proba.argmax(1), labels=labels, average="macro")
    position = {int(c): i for i, c in enumerate(test_clips)}
    weighted = np.zeros((len(test_clips), proba.shape[1]))
    total = np.zeros(len(test_clips))
    where = np.array([position[int(o)] for o in domain.owner[rows]], dtype=int)
    w = np.maximum(domain.durations[rows], 1e-3)
    np.add.at(weighted, where, proba * w[:, None])
    np.add.at(total, where, w)
    predicted = np.where(total > 0, weighted.argmax(1), -1)  # no speech: wrong
    clip = f1_score(domain.clip_label[test_clips], predicted, labels=labels, average="macro")
    return float(clip), float(seg)


def split_halves(speakers: np.ndarray, split: int, seed: int) -> tuple[list, list]:
    unique = sorted(set(speakers.tolist()))
    order = np.random.default_rng([seed, split]).permutation(len(unique))
    n_adapt = len(unique) // 2
    adapt = sorted(unique[i] for i in order[:n_adapt])
    test = sorted(unique[i] for i in order[n_adapt:])
    return adapt, test


def run_corpus(
    recipe, new, *, bases, jobs, splits, seed, lambdas, variants=None, conditions=CONDITIONS
) -> dict:
    model = base_model(recipe, new, bases=bases, jobs=jobs)
    clips = protocol_clips(new)
    _, features = features_of(clips, conditions, recipe=recipe, jobs=jobs)
    variants = variants or variants_of(model)
    out: dict = {
        "base": {
            "version": model.version,
            "trained_on": model.card.training.get("data"),
            "n_clips": model.card.training.get("n_clips"),
        },
        "n_clips": len(clips),
        "n_speakers": len({c.speaker for c in clips}),
        "splits": [],
        "conditions": {},
    }
    for cond in conditions:
        t = time.time()
        domain = Domain(model, clips, features[cond])
        figures: dict = {"base": {}, **{v: {str(lam): {} for lam in lambdas} for v in variants}}
        for split in range(splits):
            adapt_speakers, test_speakers = split_halves(domain.speakers, split, seed)
            if cond == conditions[0]:
                out["splits"].append({"adapt": adapt_speakers, "test": test_speakers})
            test = np.flatnonzero(np.isin(domain.speakers, test_speakers))
            test_rows = domain.rows(test)
            base = macro_f1s(domain, test, test_rows, domain.base[test_rows])
            figures["base"].setdefault("0", []).append(base)
            order = {
                c: np.random.default_rng([seed, split, c]).permutation(
                    np.flatnonzero(
                        np.isin(domain.speakers, adapt_speakers) & (domain.clip_label == c)
                    )
                )
                for c in range(len(domain.classes))
            }
            for k in KS[1:]:
                chosen = np.concatenate([o[:k] for o in order.values()])
                rows = domain.rows(chosen)
                for v in variants:
                    for lam in lambdas:
                        predict = fit_variant(domain, rows, v, lam)
                        f1 = macro_f1s(domain, test, test_rows, predict(test_rows))
                        figures[v][str(lam)].setdefault(str(k), []).append(f1)
        available = {
            name: int(
                min(
                    np.sum(
                        np.isin(domain.speakers, split_halves(domain.speakers, s, seed)[0])
                        & (domain.clip_label == c)
                    )
                    for s in range(splits)
                )
            )
            for c, name in enumerate(domain.classes)
        }
        out["conditions"][cond] = {
            "n_segments": len(domain.X),
            "adapting_clips_per_class_min": available,
            "figures": figures,
        }
        print(f"{new} {cond}: {time.time() - t:.0f} s", flush=True)
    return out


def summarise(report: dict) -> dict:
    """Mean and std per variant, lambda, k; the lambda chosen on the other corpus; targets."""
    corpora = list(report["corpora"])
    summary: dict = {}
    for new in corpora:
        for cond in CONDITIONS:
            figs = report["corpora"][new]["conditions"][cond]["figures"]
            base = np.array(figs["base"]["0"])
            for v, by_lam in figs.items():
                if v == "base":
                    continue
                for lam, by_k in by_lam.items():
                    entry = summary.setdefault(new, {}).setdefault(v, {}).setdefault(lam, {})
                    entry[cond] = {
                        "0": stats(base),
                        **{k: stats(np.array(vals)) for k, vals in by_k.items()},
                    }
    chosen: dict = {}
    for new in corpora:
        other = next((c for c in corpora if c != new), None)
        for v in summary[new]:
            score = {
                lam: mean_gain(summary[other][v][lam]) if other else float("nan")
                for lam in summary[new][v]
            }
            best = max(score, key=lambda lam: score[lam]) if other else None
            chosen.setdefault(v, {})[new] = {"lambda": best, "chosen_on": other}
    product: dict = {}
    for v in chosen:
        both = {
            lam: float(np.mean([mean_gain(summary[c][v][lam]) for c in corpora]))
            for lam in summary[corpora[0]][v]
        }
        product[v] = max(both, key=lambda lam: both[lam])
    # the variant the product uses: best mean clip macro-F1 over k > 0, conditions and
    # corpora, each corpus at the lambda chosen on the other one
    cross = {
        v: float(np.mean([mean_gain(summary[c][v][chosen[v][c]["lambda"]]) for c in corpora]))
        for v in chosen
    }
    best = max(cross, key=lambda v: cross[v]) if len(corpora) > 1 else None
    return {
        "per_lambda": summary,
        "chosen": chosen,
        "product_lambda": product,
        "cross_chosen_mean": {v: round(x, 4) for v, x in cross.items()},
        "best_variant": best,
    }


def stats(values: np.ndarray) -> dict:
    clip, seg = values[:, 0], values[:, 1]
    return {
        "clip_mean": round(float(clip.mean()), 4),
        "clip_std": round(float(clip.std(ddof=1)) if len(clip) > 1 else 0.0, 4),
        "segment_mean": round(float(seg.mean()), 4),
    }


def mean_gain(entry: dict) -> float:
    """Mean clip macro-F1 over k > 0 and the conditions."""
    return float(np.mean([entry[c][k]["clip_mean"] for c in entry for k in entry[c] if k != "0"]))


def targets(report: dict, variant: str, lam: str = "chosen") -> dict:
    """The issue's targets for ``variant`` at ``lam`` ("chosen": the lambda chosen on
    the other corpus)."""
    out = {}
    s = report["summary"]
    for new, choice in s["chosen"][variant].items():
        chosen = choice["lambda"] if lam == "chosen" else lam
        per = s["per_lambda"][new][variant][chosen]
        for cond in CONDITIONS:
            k0 = per[cond]["0"]
            ks = {k: per[cond][k]["clip_mean"] for k in per[cond]}
            out[f"{new} {cond}"] = {
                "k25_gain": round(ks["25"] - ks["0"], 4),
                "k100_gain": round(ks["100"] - ks["0"], 4),
                "k5_gain": round(ks["5"] - ks["0"], 4),
                "spread": k0["clip_std"],
                "met": ks["25"] - ks["0"] >= TARGETS["k25_gain"]
                and ks["100"] - ks["0"] >= TARGETS["k100_gain"]
                and ks["5"] - ks["0"] >= -k0["clip_std"],
            }
    return out


NAMES = {"ravdess": "RAVDESS", "nemo": "nEMO"}


PRODUCT = {"default": ("residual-all", "0.003"), "fast": ("residual-hand", "0.003")}
"""What callsort adapt uses (callsort.training.adapt): the residual adapter on every
input (for the fast model, its inputs are the hand-made ones), lambda 0.003 fixed up
front (the value of the issue's probe, before any of these runs)."""


def markdown_table(report: dict, variant: str | None = None, lam: str | None = None) -> str:
    """Clip macro-F1 (mean ± split-to-split std) per corpus, audio and k for ``variant``
    (default: the product's) at ``lam`` (default: the product's; "chosen": the lambda
    chosen on the other corpus)."""
    s = report["summary"]
    product_variant, product_lam = PRODUCT[report["recipe"]]
    variant = variant or product_variant
    lam = lam or product_lam
    ks = [str(k) for k in report["ks"]]
    lines = [
        "| new domain | audio | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for new, choice in s["chosen"][variant].items():
        chosen = choice["lambda"] if lam == "chosen" else lam
        per = s["per_lambda"][new][variant][chosen]
        available = report["corpora"][new]["conditions"][CONDITIONS[0]][
            "adapting_clips_per_class_min"
        ]
        few = min(available.values())
        for cond in CONDITIONS:
            cells = []
            for k in ks:
                e = per[cond][k]
                cell = f"{e['clip_mean']:.2f} ± {e['clip_std']:.2f}"
                cells.append(cell + (f" ({few}: all)" if int(k) > few else ""))
            name = NAMES[new] + (
                f" (λ {chosen}, chosen on {NAMES[choice['chosen_on']]})" if lam == "chosen" else ""
            )
            lines.append(f"| {name} | {cond} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--bases", type=Path, required=True, help="where the bases are kept")
    parser.add_argument("--corpora", default="ravdess,nemo")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--variants", default=None, help="comma-separated (default: all)")
    parser.add_argument("--lambdas", default=",".join(str(v) for v in LAMBDAS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=None, help="print a results file's tables")
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        help="results files of one corpus each (--corpora X --out FILE) to join and summarise",
    )
    args = parser.parse_args()
    if args.table:
        report = json.loads(args.table.read_text())
        for v in report["summary"]["chosen"]:
            print(f"\n{v} (mean over k > 0: {report['summary']['cross_chosen_mean'][v]})")
            print(markdown_table(report, v, "chosen"))
        print(f"\nproduct: {PRODUCT[report['recipe']]}")
        print(markdown_table(report))
        return 0
    if args.combine:
        parts = [json.loads(p.read_text()) for p in args.combine]
        report = {k: v for k, v in parts[0].items() if k not in ("summary", "targets")}
        report["corpora"] = {}
        for part in parts:  # one corpus and condition each, or more
            for c, r in part["corpora"].items():
                if c not in report["corpora"]:
                    report["corpora"][c] = r
                    continue
                conditions = report["corpora"][c]["conditions"]
                for cond, entry in r["conditions"].items():
                    if cond not in conditions:
                        conditions[cond] = entry
                        continue
                    for v, by_lam in entry["figures"].items():  # more variants or lambdas
                        if v != "base":
                            conditions[cond]["figures"].setdefault(v, {}).update(by_lam)
        report["wall_s"] = sum(part["wall_s"] for part in parts)
        report["lambdas"] = sorted({lam for part in parts for lam in part["lambdas"]})
        report["command"] = "; ".join(dict.fromkeys(part["command"] for part in parts))
        return finish(report, args.out or RESULTS / results_name(args.recipe))
    if not all((DATASETS / CORPORA[c]).is_dir() for c in CORPORA):
        print(f"no corpora under {DATASETS}: nothing to measure", file=sys.stderr)
        return 0
    lambdas = [float(v) for v in args.lambdas.split(",")]
    t = time.time()
    report = {
        "command": f"python benchmarks/adaptation.py --recipe {args.recipe} "
        f"--splits {args.splits} --bases BASES --corpora {args.corpora} --conditions "
        f"{args.conditions} --variants {args.variants or 'all'} --lambdas {args.lambdas}",
        "recipe": args.recipe,
        "ks": list(KS),
        "lambdas": lambdas,
        "n_splits": args.splits,
        "nemo_per_speaker_class": NEMO_PER_SPEAKER_CLASS,
        "corpora": {},
    }
    for new in args.corpora.split(","):
        report["corpora"][new] = run_corpus(
            args.recipe,
            new,
            bases=args.bases,
            jobs=args.jobs,
            splits=args.splits,
            seed=args.seed,
            lambdas=lambdas,
            variants=args.variants.split(",") if args.variants else None,
            conditions=tuple(args.conditions.split(",")),
        )
    report["wall_s"] = round(time.time() - t)
    return finish(report, args.out or RESULTS / results_name(args.recipe))


def results_name(recipe: str) -> str:
    return "adaptation.json" if recipe == "default" else f"adaptation-{recipe}.json"


def finish(report: dict, out: Path) -> int:
    if len(report["corpora"]) > 1:
        report["summary"] = summarise(report)
        report["targets"] = {v: targets(report, v) for v in report["summary"]["chosen"]}
        variant, lam = PRODUCT[report["recipe"]]
        if lam in report["summary"]["per_lambda"][next(iter(report["corpora"]))][variant]:
            report["targets"]["product"] = {
                "variant": variant,
                "lambda": lam,
                **targets(report, variant, lam),
            }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if "summary" in report:
        print(json.dumps({"product_lambda": report["summary"]["product_lambda"]}, indent=1))
        print(json.dumps(report["targets"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
