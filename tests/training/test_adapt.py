"""``callsort adapt`` on the demo calls: the adapted folder, its card, labelling with it, refusals.

The labels file the tests write gives the demo calls' labelled turns the four classes in
turn (a made-up archive in which every class has enough segments); the fast model keeps
the features cheap.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from callsort.cli import app
from callsort.dataset.manifest import MANIFEST
from callsort.model.adapter import Adapter, fit_adapter, input_standardisation
from callsort.model.card import ADAPTER_FILE, shipped_model_dir
from callsort.model.folder import Model
from callsort.run.analysis import recording_features
from callsort.run.batch import label
from callsort.settings import AnalysisSettings
from callsort.training.adapt import MIN_SEGMENTS_PER_CLASS, adaptation_data, fit

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_recordings"
CLASSES = ("angry", "calm", "happy", "sad")


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def shown(result) -> str:
    return f"exit {result.exit_code}\noutput:\n{result.output}"


def ground_truth() -> list[dict]:
    with (SAMPLES / "ground_truth.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def write_labels(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["recording", "channel", "start_s", "end_s", "label"])
        for r in rows:
            writer.writerow([r["recording"], r["channel"], r["start_s"], r["end_s"], r["label"]])
    return path


def cycled_rows() -> list[dict]:
    return [{**r, "label": CLASSES[i % len(CLASSES)]} for i, r in enumerate(ground_truth())]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory) -> tuple[Path, Path]:
    """The fast model adapted to the cycled labels of the demo calls: (folder, labels)."""
    root = tmp_path_factory.mktemp("adapt")
    labels = write_labels(root / "labels.csv", cycled_rows())
    out = root / "adapted"
    result = invoke(
        "adapt", labels, "--recordings", SAMPLES, "--model", "fast", "--out", out, "-j", 1
    )
    assert result.exit_code == 0, shown(result)
    return out, labels


@pytest.fixture(scope="module")
def data():
    base = Model.load("fast")
    import tempfile

    labels = write_labels(Path(tempfile.mkdtemp()) / "labels.csv", cycled_rows())
    return base, adaptation_data(labels, SAMPLES, model=base, settings=AnalysisSettings(), jobs=1)


def test_the_adapted_folder_loads_names_its_base_and_keeps_the_bases_files(adapted):
    out, labels = adapted
    model = Model.load(out)
    fast = shipped_model_dir("fast")
    entry = model.card.adaptation
    base_version = Model.load(fast).version
    assert entry["base"]["version"] == base_version
    assert entry["base"]["model"] == "fast"
    adapter_sha = hashlib.sha256((out / ADAPTER_FILE).read_bytes()).hexdigest()
    assert entry["adapter_sha256"] == adapter_sha
    assert model.version == f"{base_version}.adapted.{adapter_sha[:8]}"
    assert entry["data"]["labels_sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    for name in ("model.txt", "LICENSE"):
        assert (out / name).read_bytes() == (fast / name).read_bytes(), name
    assert model.adapter is not None and model.adapter.kind == entry["kind"]
    figures = entry["figures"]
    assert figures["estimated"] and 0 <= figures["adapted"]["macro_f1"] <= 1


def test_the_cards_counts_are_the_labelled_segments(adapted, tmp_path):
    """Counted independently: the base's own segments (callsort label), each given the
    label of the span that holds its midpoint."""
    out, _ = adapted
    result = label([SAMPLES], out=tmp_path / "ds", jobs=1, model_dir="fast")
    assert not result.failures
    segments = pq.read_table(tmp_path / "ds" / "segments").to_pandas()
    spans = pd.DataFrame(cycled_rows()).astype({"start_s": float, "end_s": float})
    counts = dict.fromkeys(CLASSES, 0)
    for seg in segments.itertuples():
        mid = (seg.start_s + seg.end_s) / 2
        hit = spans[
            (spans.recording == seg.recording)
            & (spans.channel == seg.channel)
            & (spans.start_s <= mid)
            & (mid < spans.end_s)
        ]
        if len(hit):
            counts[hit.label.iloc[0]] += 1
    data = Model.load(out).card.adaptation["data"]
    assert data["segments_per_class"] == counts
    assert data["n_recordings"] == len(set(spans.recording))
    assert data["n_channels"] == len(set(zip(spans.recording, spans.channel, strict=True)))


def test_labelling_with_the_adapted_model_relabels_what_the_base_labelled(adapted, tmp_path):
    out, _ = adapted
    dataset = tmp_path / "ds"
    first = label([SAMPLES], out=dataset, jobs=1, model_dir="fast")
    base_rows = pq.read_table(dataset / "segments").to_pandas()
    before = set(pq.read_table(dataset / MANIFEST).to_pandas()["fingerprint"])
    again = label([SAMPLES], out=dataset, jobs=1, model_dir=out)
    assert len(again.planned) == len(first.planned) > 0
    after = set(pq.read_table(dataset / MANIFEST).to_pandas()["fingerprint"])
    assert len(after) == 1 and after != before
    rows = pq.read_table(dataset / "segments").to_pandas()
    key = ["recording", "channel", "segment_index"]
    a = base_rows.sort_values(key)[[f"p_{c}" for c in CLASSES]].to_numpy()
    b = rows.sort_values(key)[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3  # the adapter changed them
    assert label([SAMPLES], out=dataset, jobs=1, model_dir=out).planned == ()


def test_with_an_infinite_pull_the_adapted_model_is_the_base(data):
    base, d = data
    adapter = fit(base, d, lam=1e12)
    np.testing.assert_allclose(adapter.coef, 0, atol=1e-9)
    huge = base.with_adapter(adapter)
    raw = recording_features(
        SAMPLES / "call_01_escalation.wav",
        feature_settings=base.feature_settings,
        settings=AnalysisSettings(),
    )
    for X in raw.features:
        np.testing.assert_allclose(huge.channel_proba(X), base.channel_proba(X), atol=1e-9)


def test_the_adapter_learns_a_systematic_shift_in_real_features(data):
    """Labels made from the base's scores plus a known linear shift of five real inputs:
    fitted on four recordings, the adapter reproduces them on the fifth, the base does not."""
    base, d = data
    columns = np.arange(5)
    mean, scale = input_standardisation(base.card.normalisation, n_inputs=base.stack.n_features)
    truth = Adapter(
        kind="residual",
        columns=columns,
        mean=mean[columns],
        scale=scale[columns],
        coef=np.random.default_rng(0).normal(0, 4.0, size=(len(CLASSES), len(columns))),
        intercept=np.zeros(len(CLASSES)),
    )
    y = truth.adjusted(d.X, d.base_proba).argmax(1)
    held_out = d.recording == "call_01_escalation.wav"
    adapter = fit_adapter(
        d.X[~held_out],
        y[~held_out],
        kind="residual",
        lam=1e-5,
        columns=columns,
        mean=mean[columns],
        scale=scale[columns],
        n_classes=len(CLASSES),
        base_proba=d.base_proba[~held_out],
    )
    adapted = adapter.adjusted(d.X[held_out], d.base_proba[held_out]).argmax(1)
    base_right = np.mean(d.base_proba[held_out].argmax(1) == y[held_out])
    assert np.mean(adapted == y[held_out]) >= 0.9 > base_right + 0.2


def test_too_few_labels_of_a_class_are_refused(tmp_path):
    rows, n_angry = [], 0
    for r in cycled_rows():  # two angry rows left: a few segments
        n_angry += r["label"] == "angry"
        rows.append({**r, "label": "calm"} if r["label"] == "angry" and n_angry > 2 else r)
    labels = write_labels(tmp_path / "few.csv", rows)
    result = invoke(
        "adapt", labels, "-r", SAMPLES, "--model", "fast", "--out", tmp_path / "m", "-j", 1
    )
    assert result.exit_code == 2, shown(result)
    assert f"at least {MIN_SEGMENTS_PER_CLASS}" in result.output
    assert "angry" in result.output
    assert not (tmp_path / "m").exists()


def test_a_labels_file_naming_missing_recordings_is_refused(tmp_path):
    rows = cycled_rows() + [
        {"recording": "nowhere.wav", "channel": "left", "start_s": 0, "end_s": 1, "label": "sad"}
    ]
    labels = write_labels(tmp_path / "missing.csv", rows)
    result = invoke(
        "adapt", labels, "-r", SAMPLES, "--model", "fast", "--out", tmp_path / "m", "-j", 1
    )
    assert result.exit_code == 2, shown(result)
    assert "nowhere.wav" in result.output and "not found" in result.output
    assert not (tmp_path / "m").exists()


def test_a_labels_file_naming_a_channel_the_recording_lacks_is_refused(tmp_path):
    rows = cycled_rows() + [
        {
            "recording": "voicemail_05_mono.flac",
            "channel": "agent",
            "start_s": 0,
            "end_s": 1,
            "label": "sad",
        }
    ]
    labels = write_labels(tmp_path / "channel.csv", rows)
    result = invoke(
        "adapt", labels, "-r", SAMPLES, "--model", "fast", "--out", tmp_path / "m", "-j", 1
    )
    assert result.exit_code == 2, shown(result)
    assert "agent" in result.output


def test_an_adapted_model_is_not_adapted_again(adapted, tmp_path):
    out, labels = adapted
    result = invoke("adapt", labels, "-r", SAMPLES, "--model", out, "--out", tmp_path / "m")
    assert result.exit_code == 2, shown(result)
    assert "already adapted" in result.output


def test_a_changed_adapter_file_is_refused(adapted, tmp_path):
    import shutil

    out, _ = adapted
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    data = bytearray((copy / ADAPTER_FILE).read_bytes())
    data[-10] ^= 1
    (copy / ADAPTER_FILE).write_bytes(bytes(data))
    from callsort.errors import ModelError

    with pytest.raises(ModelError, match="checksum"):
        Model.load(copy)
    card = json.loads((copy / "card.json").read_text())
    assert card["adaptation"]["adapter_sha256"]
