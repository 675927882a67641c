"""``callsort adapt``: learn an archive's own labels on top of a model, into a new model folder.

The labels file is read and matched by :mod:`callsort.dataset.labels`; the recordings it
names go through ``callsort label``'s own decode, segmentation and features
(:func:`callsort.run.analysis.recording_features`) and the model's own channel
normalisation (:meth:`~callsort.model.folder.Model.channel_inputs`). An
:class:`~callsort.model.adapter.Adapter` is fitted on the labelled segments
(:data:`ADAPTER_KIND`, pull :data:`DEFAULT_LAMBDA`: chosen by
``benchmarks/adaptation.py``), its figures are estimated by cross-validation over the
recordings, and the base's files are copied unchanged beside ``adapter.npz``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from callsort.errors import CallsortError, ModelError, UsageError
from callsort.model.adapter import Adapter, fit_adapter, input_standardisation
from callsort.model.card import ADAPTER_FILE, CARD_FILE, SHIPPED_MODELS, model_folder
from callsort.model.folder import Model
from callsort.run.worker import map_on_one_thread
from callsort.settings import AnalysisSettings

DEFAULT_LAMBDA = 0.003
"""Pull of the adapter toward the model: fixed before the protocol
(benchmarks/adaptation.py), where the fast recipe's figures barely moved between
0.0001 and 0.1 and the best value chosen on either corpus (0.01) did within a point
of it on the other."""
ADAPTER_KIND = "residual"
"""What adapts a model with a linear head: ``"residual"`` (a residual adapter on every
input: hand-made features, embedding and their channel z-scores) or ``"head"`` (the
head re-fitted, LightGBM reading it). A model without a head gets a residual one. The
protocol: residual 0.55 mean clip macro-F1 over k, corpora and audio, the head alone
0.53, the head under LightGBM 0.42 (LightGBM learned to trust the head little)."""
MIN_SEGMENTS_PER_CLASS = 5
"""Fewest labelled segments of each class ``callsort adapt`` learns from: five clips
per class (about five segments) in benchmarks/adaptation.py, where five clips per class
never did worse than the model itself (default recipe +0.11 to +0.23, fast +0.03 to
+0.18); with fewer, one odd segment decides what a class sounds like."""
CV_FOLDS = 5
"""Folds of the recordings for the adapted figures (fewer with fewer recordings)."""
MIN_CV_RECORDINGS = 3
"""Recordings needed to estimate the adapted figures by cross-validation."""
SHOWN = 10
"""Names listed in an error message before "... and N more"."""


@dataclass(frozen=True)
class AdaptationData:
    """The labelled segments: model inputs ``X`` (segments, inputs), integer ``y`` in the
    model's class order, the recording and channel of each, the base's probabilities."""

    X: np.ndarray
    y: np.ndarray
    recording: np.ndarray
    channel: np.ndarray
    base_proba: np.ndarray
    n_rows: int
    n_unmatched_rows: int
    unknown_labels: dict[str, int]
    labels_sha256: str


@dataclass(frozen=True)
class Adaptation:
    """What :func:`adapt` wrote: the folder, its card's ``adaptation`` entry, wall time."""

    folder: Path
    version: str
    entry: dict
    wall_s: float


def adapt(
    labels_file: Path | str,
    recordings: Path | str,
    *,
    out: Path | str,
    model: Path | str | None = None,
    settings: AnalysisSettings = AnalysisSettings(),
    jobs: int = 1,
    lam: float = DEFAULT_LAMBDA,
    command: str = "",
    on_recording: Callable[[], None] | None = None,
) -> Adaptation:
    """Adapt ``model`` (None: the shipped default) to the labels in ``labels_file`` of the
    recordings under ``recordings``; write the adapted model folder ``out``."""
    started = time.perf_counter()
    base_dir = model_folder(model)
    base = Model.load(base_dir)
    out = Path(out)
    if base.adapter is not None:
        raise ModelError(
            f"the model in {base_dir} is already adapted (from {base.card.adaptation['base']['version']}): "
            "adapt its base with all your labels together"
        )
    if out.resolve() == base_dir.resolve():
        raise UsageError("--out must be a new folder, not the model being adapted")
    if not lam > 0:
        raise UsageError(f"--lambda must be above 0, not {lam}")
    data = adaptation_data(
        labels_file, recordings, model=base, settings=settings, jobs=jobs, on_recording=on_recording
    )
    check_counts(data, base.classes)
    adapter = fit(base, data, lam=lam)
    figures = cross_validated(base, data, lam=lam)
    entry = {
        "kind": adapter.kind,
        "inputs": "the linear head's" if adapter.kind == "head" else "all",
        "lambda": lam,
        "adapter_sha256": hashlib.sha256(adapter.to_npz()).hexdigest(),
        "base": {
            "version": base.version,
            "model": str(model)
            if isinstance(model, str) and model in SHIPPED_MODELS
            else ("default" if model is None else Path(base_dir).name),
            "model_sha256": base.card.model_sha256,
            "head_sha256": base.card.head_sha256,
        },
        "data": data_summary(data, base.classes),
        "analysis": {
            "channels": settings.channels.mode,
            "channel_names": list(settings.channels.names),
            "max_segment_s": settings.segmentation.max_segment_s,
        },
        "figures": figures,
        "command": command,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    version = f"{base.version}.adapted.{entry['adapter_sha256'][:8]}"
    write_adapted(base, adapter, entry, version=version, out=out)
    return Adaptation(out, version, entry, time.perf_counter() - started)


def adaptation_data(
    labels_file: Path | str,
    recordings: Path | str,
    *,
    model: Model,
    settings: AnalysisSettings,
    jobs: int,
    on_recording: Callable[[], None] | None = None,
) -> AdaptationData:
    """Read the labels, compute the named recordings' features as ``callsort label`` does
    and keep the labelled segments' model inputs."""
    import pandas as pd

    from callsort.dataset.labels import match_segments, read_labels

    labels = read_labels(labels_file, classes=model.classes)
    folder = Path(recordings)
    if not folder.is_dir():
        raise UsageError(f"--recordings: {folder} is not a folder")
    names = sorted({r.recording for r in (*labels.rows, *labels.outside)})
    if not labels.rows:
        raise UsageError(
            f"labels file {labels.path} labels nothing with the model's classes "
            f"({', '.join(model.classes)})"
        )
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise UsageError(
            f"the labels file names {len(missing)} recording(s) not found under {folder}: "
            + listed(missing)
        )
    features = computed_features(
        [folder / n for n in names], model=model, settings=settings, jobs=jobs, on_done=on_recording
    )
    segments = pd.DataFrame(
        [
            (name, channel, i, start, end)
            for name, raw in zip(names, features, strict=True)
            for channel, segs in zip(raw.names, raw.segments, strict=True)
            for i, (start, end) in enumerate(segs)
        ],
        columns=["recording", "channel", "segment_index", "start_s", "end_s"],
    )
    channels = [(n, c) for n, raw in zip(names, features, strict=True) for c in raw.names]
    match = match_segments(labels, segments, recordings=names, channels=channels)
    labelled = match.labelled
    index = {c: i for i, c in enumerate(model.classes)}
    parts_X, parts_p, parts = [], [], []
    by_name = dict(zip(names, features, strict=True))
    for (name, channel), rows in labelled.groupby(["recording", "channel"], sort=True):
        raw = by_name[name]
        X = model.channel_inputs(raw.features[raw.names.index(channel)])
        picked = X[rows["segment_index"].to_numpy()]
        parts_X.append(picked)
        parts_p.append(model.predict_proba(picked))
        parts.append(rows)
    if not parts:
        raise UsageError(
            f"no labelled row of {labels.path} covers a speech segment callsort finds: "
            "check the times and channel names against callsort label's segments"
        )
    rows = pd.concat(parts)
    return AdaptationData(
        X=np.concatenate(parts_X).astype(np.float32),
        y=np.array([index[v] for v in rows["label"]]),
        recording=rows["recording"].astype(str).to_numpy(),
        channel=rows["channel"].astype(str).to_numpy(),
        base_proba=np.concatenate(parts_p),
        n_rows=labels.n_rows,
        n_unmatched_rows=len(match.unmatched),
        unknown_labels=labels.unknown_labels,
        labels_sha256=labels.sha256,
    )


def computed_features(paths: Sequence[Path], *, model: Model, settings, jobs, on_done=None):
    """:func:`~callsort.run.analysis.recording_features` of every path, ``jobs`` spawned
    processes at a time; refuses recordings that cannot be read, naming them."""
    tasks = [(p, model.feature_settings, settings) for p in paths]
    results = map_on_one_thread(recording_task, tasks, jobs=jobs, on_done=on_done)
    failed = [f"{p.name} ({r})" for p, r in zip(paths, results, strict=True) if isinstance(r, str)]
    if failed:
        raise UsageError(f"{len(failed)} labelled recording(s) cannot be read: " + listed(failed))
    return results


def recording_task(task: tuple):
    """One recording's features, or the reason it cannot be read (a worker's task)."""
    from callsort.run.analysis import recording_features

    path, feature_settings, settings = task
    try:
        return recording_features(path, feature_settings=feature_settings, settings=settings)
    except CallsortError as exc:
        return str(exc)


def check_counts(data: AdaptationData, classes: Sequence[str]) -> None:
    """Refuse when a class has fewer than :data:`MIN_SEGMENTS_PER_CLASS` labelled segments."""
    counts = np.bincount(data.y, minlength=len(classes))
    short = [f"{c} {n}" for c, n in zip(classes, counts, strict=True) if n < MIN_SEGMENTS_PER_CLASS]
    if short:
        raise UsageError(
            f"too few labelled segments to learn from: {', '.join(short)} (need at least "
            f"{MIN_SEGMENTS_PER_CLASS} of each of {', '.join(classes)}: with fewer, a few odd "
            "segments decide what a class sounds like, and a class never shown would be "
            "learned as never said); label more segments of those classes"
        )


def fit(model: Model, data: AdaptationData, *, lam: float, rows: np.ndarray | None = None):
    """The product's adapter fitted on ``data`` (or its ``rows``): :data:`ADAPTER_KIND`
    for a model with a linear head, a residual adapter on every input otherwise."""
    rows = np.arange(len(data.y)) if rows is None else rows
    head = model.base_head
    if ADAPTER_KIND == "head" and head is not None:
        return fit_adapter(
            data.X[rows],
            data.y[rows],
            kind="head",
            lam=lam,
            columns=head.columns,
            mean=head.mean,
            scale=head.scale,
            n_classes=len(model.classes),
            coef0=head.coef,
            intercept0=head.intercept,
        )
    n = model.stack.n_features
    mean, scale = input_standardisation(model.card.normalisation, n_inputs=n, X=data.X[rows])
    return fit_adapter(
        data.X[rows],
        data.y[rows],
        kind="residual",
        lam=lam,
        columns=np.arange(n),
        mean=mean,
        scale=scale,
        n_classes=len(model.classes),
        base_proba=data.base_proba[rows],
    )


def adapted_proba(model: Model, adapter: Adapter, X: np.ndarray, base_proba: np.ndarray):
    """What the model with ``adapter`` gives for the inputs ``X`` (whose base
    probabilities are ``base_proba``)."""
    if adapter.kind == "residual":
        return adapter.adjusted(X, base_proba)
    return model.with_adapter(adapter).predict_proba(X)


def cross_validated(model: Model, data: AdaptationData, *, lam: float) -> dict:
    """Base and adapted figures on recordings the adapter did not learn from (folds of
    the recordings), or why there are none."""
    from sklearn.model_selection import GroupKFold

    from callsort.training.metrics import scores

    recordings = np.unique(data.recording)
    if len(recordings) < MIN_CV_RECORDINGS:
        return {
            "estimated": False,
            "why": f"{len(recordings)} recording(s): at least {MIN_CV_RECORDINGS} are needed to "
            "test the adapter on recordings it did not learn from",
        }
    n_folds = min(CV_FOLDS, len(recordings))
    adapted = np.zeros_like(data.base_proba)
    for train, test in GroupKFold(n_splits=n_folds).split(data.X, data.y, data.recording):
        adapter = fit(model, data, lam=lam, rows=train)
        adapted[test] = adapted_proba(model, adapter, data.X[test], data.base_proba[test])
    classes = model.classes
    truth = np.asarray(classes)[data.y]
    present = [c for c in classes if c in set(truth.tolist())]

    def figures(proba):
        s = scores(truth, np.asarray(classes)[proba.argmax(1)], present)
        return {k: s[k] for k in ("accuracy", "macro_f1", "per_class_f1")}

    return {
        "estimated": True,
        "protocol": f"{n_folds} folds of the {len(recordings)} recordings; segment level, "
        "each segment counted once",
        "n_segments": len(data.y),
        "base": figures(data.base_proba),
        "adapted": figures(adapted),
    }


def data_summary(data: AdaptationData, classes: Sequence[str]) -> dict:
    counts = np.bincount(data.y, minlength=len(classes))
    return {
        "labels_sha256": data.labels_sha256,
        "n_label_rows": data.n_rows,
        "n_unmatched_rows": data.n_unmatched_rows,
        "labels_outside_classes": data.unknown_labels,
        "n_segments": int(len(data.y)),
        "segments_per_class": {c: int(n) for c, n in zip(classes, counts, strict=True)},
        "n_recordings": int(len(np.unique(data.recording))),
        "n_channels": int(len({(r, c) for r, c in zip(data.recording, data.channel, strict=True)})),
    }


def write_adapted(base: Model, adapter: Adapter, entry: dict, *, version: str, out: Path) -> None:
    """The base's folder copied unchanged, with ``adapter.npz`` and the new card, written
    beside ``out`` first and moved into place once complete."""
    from callsort.model.card import ModelCard

    a_model = (out / CARD_FILE).is_file()
    if out.exists() and not a_model and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not a model folder: choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for item in base.path.iterdir():
            if item.is_file() and item.name not in (CARD_FILE, ADAPTER_FILE):
                shutil.copy2(item, tmp / item.name)
        (tmp / ADAPTER_FILE).write_bytes(adapter.to_npz())
        card: ModelCard = replace(base.card, version=version, adaptation=entry)
        (tmp / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
        Model.load(tmp)  # refuse to leave behind a folder that does not load
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def summary_lines(result: Adaptation) -> list[str]:
    """What ``callsort adapt`` prints when done."""
    e = result.entry
    counts = ", ".join(f"{c} {n}" for c, n in e["data"]["segments_per_class"].items())
    lines = [
        f"adapted {e['base']['version']} -> {result.version} in {result.wall_s:.0f} s",
        f"learned from {e['data']['n_segments']} labelled segments ({counts}) of "
        f"{e['data']['n_recordings']} recordings",
    ]
    f = e["figures"]
    if f["estimated"]:
        lines.append(
            f"macro-F1 on held-out recordings ({f['protocol']}): base {f['base']['macro_f1']:.3f}"
            f", adapted {f['adapted']['macro_f1']:.3f}"
        )
        if f["adapted"]["macro_f1"] < f["base"]["macro_f1"]:
            lines.append(
                "the adapted model did worse than the base on recordings it did not learn "
                "from: keep labelling with the base, or label more recordings"
            )
    else:
        lines.append(f"no adapted figures: {f['why']}")
    lines.append(f"wrote {result.folder}: callsort label ... --model {result.folder}")
    return lines
