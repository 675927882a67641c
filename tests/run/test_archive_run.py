"""Labelling with a model that standardises features per archive (issue 12 item 4).

A tiny model is trained here on synthetic voices standardised over their own
corpus, its card carrying the training population; the archives it labels are
synthetic recordings at another level and pitch range (another "recording chain").
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf
from conftest import speech_like, white_noise
from typer.testing import CliRunner

import callsort
from callsort.cli import app
from callsort.errors import CallsortError
from callsort.features.archive import archive_statistics, shrunk, standardised
from callsort.features.spectral import feature_names
from callsort.model.card import ModelCard
from callsort.model.classifier import EmotionClassifier
from callsort.model.folder import load_model, save_model
from callsort.run.analysis import analyse_recording, recording_features, waveform_segments
from callsort.run.archive import ARCHIVE_FILE, sample_recordings
from callsort.run.batch import label as label_run
from callsort.settings import AnalysisSettings, FeatureSettings, SegmentationSettings

SR = 16_000
CLASSES = ("high", "low")
PRIOR_WEIGHT = 20.0
F0 = {"low": (90.0, 150.0), "high": (190.0, 300.0)}


def voice(label: str, seed: int, *, duration_s: float, rms: float, shift: float = 1.0):
    lo, hi = F0[label]
    y = speech_like(duration_s, f0_range_hz=(lo * shift, hi * shift), rms=rms, seed=seed)
    return y + white_noise(duration_s, rms=rms / 100, seed=seed + 1000)


def recording(seed: int, *, pause_s: float = 0.6) -> np.ndarray:
    """Two turns, one of each class, at another level and pitch than the training voices."""
    parts = []
    for k, label in enumerate(CLASSES if seed % 2 else CLASSES[::-1]):
        parts += [np.zeros(int(pause_s * SR), np.float32)]
        parts += [voice(label, 100 * seed + k, duration_s=1.6, rms=0.03, shift=1.15)]
    parts += [np.zeros(int(pause_s * SR), np.float32)]
    y = np.concatenate(parts)
    return y + white_noise(len(y) / SR, rms=2e-4, seed=seed)


def save_tiny_model(folder: Path, *, with_entry: bool) -> Path:
    """A model trained on features standardised over its training corpus; its card
    carries the population (``with_entry``) or not (the same booster)."""
    fs = FeatureSettings()
    names = feature_names(fs)
    X, y = [], []
    for label in CLASSES:
        for take in range(12):
            wave = voice(label, 7 * take + (label == "low"), duration_s=1.5, rms=0.1)
            _, rows = waveform_segments(wave, settings=AnalysisSettings(), feature_settings=fs)
            X.append(rows)
            y += [label] * len(rows)
    X = np.concatenate(X)
    population = archive_statistics(X)
    classifier = EmotionClassifier(
        n_estimators=30, classes=list(CLASSES), params={"min_data_in_leaf": 3}
    ).fit(standardised(X, population), y, feature_names=names)
    training = (
        {
            "archive_standardisation": {
                "population": population.to_dict(),
                "prior_weight": PRIOR_WEIGHT,
            }
        }
        if with_entry
        else {}
    )
    card = ModelCard(
        version="0-test+archive" if with_entry else "0-test+plain",
        classes=list(CLASSES),
        feature_names=names,
        feature_settings=asdict(fs),
        segmentation_settings=asdict(SegmentationSettings()),
        training=training,
    )
    folder.mkdir(parents=True, exist_ok=True)
    return save_model(classifier, card, folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archive-models")
    return {
        "archive": save_tiny_model(root / "archive", with_entry=True),
        "plain": save_tiny_model(root / "plain", with_entry=False),
    }


def write_archive(folder: Path, seeds) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"call_{seed:02d}.wav"
        sf.write(path, recording(seed), SR, "PCM_16")
        paths.append(path)
    return paths


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def segments_of(out: Path):
    return (
        ds.dataset(out / "segments", format="parquet", partitioning="hive").to_table().to_pandas()
    )


def calls_of(out: Path):
    return ds.dataset(out / "calls", format="parquet", partitioning="hive").to_table().to_pandas()


def last_summary(out: Path) -> dict:
    return json.loads(sorted((out / "runs").glob("*.json"))[-1].read_text())


def independent_statistics(paths, population):
    """The shrunk statistics of the segments of ``paths``, read with soundfile and
    segmented by :func:`waveform_segments` (16 kHz mono files: one channel each)."""
    X = []
    for path in sorted(paths):
        y, sr = sf.read(path, dtype="float32")
        assert sr == SR and y.ndim == 1
        _, rows = waveform_segments(
            y, settings=AnalysisSettings(), feature_settings=FeatureSettings()
        )
        X.append(rows)
    X = np.concatenate(X)
    return shrunk(archive_statistics(X), population=population, weight=PRIOR_WEIGHT), len(X)


def test_sample_recordings_are_spread_over_the_sorted_plan(tmp_path):
    from callsort.audio.discover import find_recordings

    write_archive(tmp_path, range(10))
    found = find_recordings([tmp_path])
    picked = [r.name for r in sample_recordings(found[::-1], n=4)]
    assert picked == ["call_00.wav", "call_03.wav", "call_06.wav", "call_09.wav"]
    assert len(sample_recordings(found, n=64)) == 10
    assert sample_recordings(found, n=0) == []


def test_label_computes_writes_and_reuses_the_archive_statistics(models, tmp_path):
    archive = tmp_path / "archive"
    first = write_archive(archive, range(1, 5))
    out = tmp_path / "out"
    result = invoke("label", archive, "--model", models["archive"], "--out", out, "-j", 1, "-q")
    assert result.exit_code == 0, result.output
    stats_file = out / ARCHIVE_FILE
    doc = json.loads(stats_file.read_text())
    model = load_model(models["archive"])
    population = model.archive_population

    # (a) every recording was sampled: the file counts their segment rows plus the prior,
    # and its figures are those of the raw features computed independently
    segments = segments_of(out)
    assert doc["n_segments"] == pytest.approx(len(segments) + PRIOR_WEIGHT)
    assert doc["sampled_recordings"] == 4 and doc["sampled_segments"] == len(segments)
    assert doc["source"] == "computed" and doc["prior_weight"] == PRIOR_WEIGHT
    assert doc["model_version"] == model.version
    expected, n = independent_statistics(first, population)
    assert n == len(segments)
    np.testing.assert_allclose(doc["mean"], expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc["var"], expected.var, rtol=1e-4, atol=1e-6)
    summary = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert summary["archive_statistics"] == {
        "source": "computed",
        "sampled_recordings": 4,
        "sampled_segments": len(segments),
        "failed_recordings": 0,
    }

    # the rows (the segments alone: raw_p_*) are the model's predictions on features
    # standardised with those statistics
    stats = callsort.features.archive.ArchiveStatistics.from_dict(doc)
    raw = recording_features(
        first[0], feature_settings=model.feature_settings, settings=AnalysisSettings()
    )
    want = model.predict_proba(standardised(raw.features[0], stats))
    got = segments[segments["recording"] == first[0].name].sort_values("segment_index")
    np.testing.assert_allclose(got[["raw_p_high", "raw_p_low"]].to_numpy(), want, atol=1e-5)
    # ... which differ from what the population alone gives (the archive is shifted)
    shifted = model.predict_proba(standardised(raw.features[0], population))
    assert np.abs(shifted - want).max() > 1e-3

    # (b) new recordings arrive: the file is reused byte for byte and they are labelled
    before = stats_file.read_bytes()
    write_archive(archive, range(5, 7))
    result = invoke("label", archive, "--model", models["archive"], "--out", out, "-j", 2, "-q")
    assert result.exit_code == 0, result.output
    assert stats_file.read_bytes() == before
    calls = calls_of(out)
    assert set(calls["recording"]) == {f"call_{s:02d}.wav" for s in range(1, 7)}
    assert (calls["status"] == "ok").all()
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 2
    second = [json.loads(p.read_text()) for p in runs]
    assert {s["archive_statistics"]["source"] for s in second} == {"computed", "reused"}
    segments = segments_of(out)
    new = segments[segments["recording"] == "call_05.wav"].sort_values("segment_index")
    raw = recording_features(
        archive / "call_05.wav",
        feature_settings=model.feature_settings,
        settings=AnalysisSettings(),
    )
    want = model.predict_proba(standardised(raw.features[0], stats))
    np.testing.assert_allclose(new[["raw_p_high", "raw_p_low"]].to_numpy(), want, atol=1e-5)


def test_labels_do_not_depend_on_the_number_of_jobs(models, tmp_path):
    archive = tmp_path / "archive"
    write_archive(archive, range(1, 5))
    rows = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        result = invoke(
            "label", archive, "--model", models["archive"], "--out", out, "-j", jobs, "-q"
        )
        assert result.exit_code == 0, result.output
        rows[jobs] = segments_of(out).sort_values(["recording", "channel", "segment_index"])
        assert (out / ARCHIVE_FILE).is_file()
    assert (
        json.loads((tmp_path / "out1" / ARCHIVE_FILE).read_text())["mean"]
        == json.loads((tmp_path / "out2" / ARCHIVE_FILE).read_text())["mean"]
    )
    columns = ["recording", "channel", "segment_index", "label"]
    assert rows[1][columns].values.tolist() == rows[2][columns].values.tolist()
    np.testing.assert_allclose(rows[1]["p_high"], rows[2]["p_high"], atol=1e-6)


def test_a_model_without_archive_standardisation_writes_no_statistics(models, tmp_path):
    archive = tmp_path / "archive"
    paths = write_archive(archive, range(1, 3))
    out = tmp_path / "out"
    result = invoke("label", archive, "--model", models["plain"], "--out", out, "-j", 1, "-q")
    assert result.exit_code == 0, result.output
    assert not (out / ARCHIVE_FILE).exists()
    summary = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert summary["archive_statistics"] is None
    model = load_model(models["plain"])
    assert model.archive_population is None
    segments = segments_of(out)
    for path in paths:  # the rows of the analysis as it always was
        analysis = analyse_recording(path, model=model, settings=AnalysisSettings())
        got = segments[segments["recording"] == path.name].sort_values("segment_index")
        np.testing.assert_allclose(
            got[["p_high", "p_low"]].to_numpy(), analysis.channels[0].probabilities, atol=1e-6
        )
    # ... and statistics imposed on it are refused
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(load_model(models["archive"]).archive_population.to_dict()))
    result = invoke("label", archive, "--model", models["plain"], "--archive-statistics", stats)
    assert result.exit_code == 2
    assert "does not standardise features per archive" in result.output


def test_imposed_statistics_are_checked_and_used(models, tmp_path):
    archive = tmp_path / "archive"
    paths = write_archive(archive, range(1, 3))
    model = load_model(models["archive"])
    population = model.archive_population
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"n_segments": 10, "mean": [0.0] * 5, "var": [1.0] * 5}))
    out = tmp_path / "out"
    result = invoke(
        "label", archive, "--model", models["archive"], "--out", out, "--archive-statistics", wrong
    )
    assert result.exit_code == 2, result.output
    assert "statistics of 5 features" in result.output
    assert f"computes {len(population.mean)} raw features" in result.output
    assert not out.exists()  # refused before the output folder is touched
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({**population.to_dict(), "var": [float("nan")] * len(population.var)})
    )
    result = invoke("label", archive, "--model", models["archive"], "--archive-statistics", bad)
    assert result.exit_code == 2 and "non-finite" in result.output

    # statistics made elsewhere (here: another archive's) label this small batch
    other = tmp_path / "other"
    write_archive(other, range(10, 14))
    big = tmp_path / "big"
    assert (
        invoke("label", other, "--model", models["archive"], "--out", big, "-j", 1, "-q").exit_code
        == 0
    )
    imposed = big / ARCHIVE_FILE
    result = invoke(
        "label",
        archive,
        "--model",
        models["archive"],
        "--out",
        out,
        "-j",
        1,
        "-q",
        "--archive-statistics",
        imposed,
    )
    assert result.exit_code == 0, result.output
    stats = callsort.features.archive.ArchiveStatistics.from_dict(json.loads(imposed.read_text()))
    segments = segments_of(out)
    raw = recording_features(
        paths[0], feature_settings=model.feature_settings, settings=AnalysisSettings()
    )
    got = segments[segments["recording"] == paths[0].name].sort_values("segment_index")
    want = model.predict_proba(standardised(raw.features[0], stats))
    np.testing.assert_allclose(got[["raw_p_high", "raw_p_low"]].to_numpy(), want, atol=1e-5)
    summary = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert summary["archive_statistics"] == {"source": "imposed"}
    assert (
        json.loads((out / ARCHIVE_FILE).read_text())["mean"]
        == json.loads(imposed.read_text())["mean"]
    )


def test_the_python_api_computes_the_statistics_of_its_inputs(models, tmp_path):
    archive = tmp_path / "archive"
    paths = write_archive(archive, range(1, 4))
    model = load_model(models["archive"])
    segments, calls = callsort.label(archive, model=models["archive"], jobs=1)
    assert (calls["status"] == "ok").all()
    expected, n = independent_statistics(paths, model.archive_population)
    assert len(segments) == n
    for path in paths:
        _, rows = waveform_segments(
            sf.read(path, dtype="float32")[0],
            settings=AnalysisSettings(),
            feature_settings=FeatureSettings(),
        )
        got = segments[segments["recording"] == path.name].sort_values("segment_index")
        want = model.predict_proba(standardised(rows, expected))
        np.testing.assert_allclose(got[["raw_p_high", "raw_p_low"]].to_numpy(), want, atol=1e-4)
    assert not list(tmp_path.rglob(ARCHIVE_FILE))  # nothing written


def test_every_sampled_recording_failing_falls_back_to_the_population(models, tmp_path):
    archive = tmp_path / "archive"
    paths = write_archive(archive, range(1, 3))
    (archive / "a_broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all" * 10)
    settings = replace(AnalysisSettings(), archive_sample_recordings=1)  # samples a_broken.wav
    out = tmp_path / "out"
    run = label_run([archive], out=out, model_dir=models["archive"], settings=settings, jobs=1)
    assert run.n_ok == 2 and [r for r, _ in run.failures] == ["a_broken.wav"]
    # nothing learned: the file says so (the rows were labelled against the population)
    assert json.loads((out / ARCHIVE_FILE).read_text())["source"] == "population"
    assert any("training population" in note for note in run.notes)
    assert run.archive == {
        "source": "population",
        "sampled_recordings": 0,
        "sampled_segments": 0,
        "failed_recordings": 1,
    }
    model = load_model(models["archive"])
    segments = segments_of(out)
    raw = recording_features(
        paths[0], feature_settings=model.feature_settings, settings=AnalysisSettings()
    )
    got = segments[segments["recording"] == paths[0].name].sort_values("segment_index")
    want = model.predict_proba(standardised(raw.features[0], model.archive_population))
    np.testing.assert_allclose(got[["raw_p_high", "raw_p_low"]].to_numpy(), want, atol=1e-5)

    # ... and the next run samples again (not refused for the rows already there)
    sf.write(archive / "0_new.wav", recording(3), SR, "PCM_16")  # first by name: sampled
    again = label_run([archive], out=out, model_dir=models["archive"], settings=settings, jobs=1)
    assert [p.recording.name for p in again.planned] == ["0_new.wav"] and again.n_ok == 1
    assert again.archive["source"] == "computed" and again.archive["sampled_recordings"] == 1
    assert json.loads((out / ARCHIVE_FILE).read_text())["source"] == "computed"


def test_dask_computes_and_applies_the_same_statistics(models, tmp_path):
    pytest.importorskip("distributed", reason="the Dask engine needs callsort[dask]")
    archive = tmp_path / "archive"
    write_archive(archive, range(1, 4))
    runs = {
        engine: label_run(
            [archive], out=tmp_path / engine, model_dir=models["archive"], engine=engine, jobs=2
        )
        for engine in ("local", "dask")
    }
    assert runs["dask"].n_ok == runs["local"].n_ok == 3
    assert runs["dask"].archive == runs["local"].archive
    docs = {e: json.loads((tmp_path / e / ARCHIVE_FILE).read_text()) for e in runs}
    np.testing.assert_allclose(docs["dask"]["mean"], docs["local"]["mean"], rtol=1e-12)
    rows = {e: segments_of(tmp_path / e).sort_values(["recording", "segment_index"]) for e in runs}
    np.testing.assert_allclose(rows["dask"]["p_high"], rows["local"]["p_high"], atol=1e-6)


def test_lost_statistics_of_a_labelled_dataset_are_refused_until_the_user_chooses(models, tmp_path):
    """Issue 18 item 4: a missing or unusable archive-statistics.json is not silently
    recomputed from tonight's files when rows labelled with it are in the dataset."""
    archive = tmp_path / "archive"
    write_archive(archive, range(1, 4))
    out = tmp_path / "out"
    label = ("label", archive, "--model", models["archive"], "--out", out, "-j", 1, "-q")
    assert invoke(*label).exit_code == 0
    stats_file = out / ARCHIVE_FILE
    good = stats_file.read_bytes()
    doc = json.loads(good)
    backup = tmp_path / "backup.json"
    backup.write_bytes(good)
    write_archive(archive, [4])  # tonight's recording
    manifest = (out / "manifest.parquet").read_bytes()
    damages = {  # what is done to the file, and what the refusal says of it
        "is missing": None,
        "is not JSON": good[: len(good) // 2],  # truncated
        "does not fit the model (statistics of 5 features": json.dumps(
            {**doc, "mean": doc["mean"][:5], "var": doc["var"][:5]}
        ).encode(),
        "was made for another model": json.dumps({**doc, "fingerprint": "0" * 16}).encode(),
    }
    for reason, damaged in damages.items():
        if damaged is None:
            stats_file.unlink()
        else:
            stats_file.write_bytes(damaged)
        result = invoke(*label)
        assert result.exit_code == 2, (reason, result.output)
        message = " ".join(result.output.split())
        assert f"{stats_file} {reason}" in message, message
        assert "but 3 recordings of this dataset were labelled" in message
        for choice in ("Restore the file", "--archive-statistics FILE", "--force"):
            assert choice in message, (choice, message)
        assert (out / "manifest.parquet").read_bytes() == manifest  # nothing labelled
        assert (stats_file.read_bytes() if stats_file.exists() else None) == damaged
        summary = last_summary(out)
        assert summary["exit_code"] == 2 and f"{stats_file} {reason}" in summary["error"]

    # --archive-statistics imposes the backup on the damaged dataset; the new recording is
    # labelled with it, the file is replaced by it, and the summary says so
    result = invoke(*label, "--archive-statistics", backup)
    assert result.exit_code == 0, result.output
    summary = last_summary(out)
    assert summary["archive_statistics"] == {"source": "imposed"}
    assert summary["reasons"] == {"new": 1}
    assert any("replaced by those imposed" in note for note in summary["notes"])
    assert json.loads(stats_file.read_text())["mean"] == doc["mean"]
    model = load_model(models["archive"])
    stats = callsort.features.archive.ArchiveStatistics.from_dict(doc)
    raw = recording_features(
        archive / "call_04.wav",
        feature_settings=model.feature_settings,
        settings=AnalysisSettings(),
    )
    segments = segments_of(out)
    got = segments[segments["recording"] == "call_04.wav"].sort_values("segment_index")
    want = model.predict_proba(standardised(raw.features[0], stats))
    np.testing.assert_allclose(got[["raw_p_high", "raw_p_low"]].to_numpy(), want, atol=1e-5)

    # --force computes them again (from every recording) and labels everything again
    stats_file.write_bytes(good[:100])
    result = invoke(*label, "--force")
    assert result.exit_code == 0, result.output
    summary = last_summary(out)
    assert summary["archive_statistics"]["source"] == "computed"
    assert summary["archive_statistics"]["sampled_recordings"] == 4
    assert summary["reasons"] == {"forced": 4}
    assert any(
        "computed again (--force)" in note and "is not JSON" in note for note in summary["notes"]
    )
    assert json.loads(stats_file.read_text())["sampled_recordings"] == 4
    write_archive(archive, [5])
    assert invoke(*label).exit_code == 0  # and the next run reuses them
    assert last_summary(out)["archive_statistics"] == {"source": "reused"}


def test_a_first_run_limited_by_max_files_or_since_samples_the_whole_archive(models, tmp_path):
    """Issue 18 item 5: the statistics a dataset keeps for good come from every recording
    found, not from the few a bounded first run labels."""
    archive = tmp_path / "archive"
    paths = write_archive(archive, range(1, 5))
    old = 1_600_000_000  # 2020-09-13: before --since
    for path in paths[:2]:
        os.utime(path, (old, old))
    label = ("label", archive, "--model", models["archive"], "-j", 1, "-q", "--out")
    assert invoke(*label, tmp_path / "full").exit_code == 0
    want = json.loads((tmp_path / "full" / ARCHIVE_FILE).read_text())
    assert want["sampled_recordings"] == 4
    rows = segments_of(tmp_path / "full").sort_values(["recording", "segment_index"])
    for name, bound in {
        "max-files": ("--max-files", 1),
        "since": ("--since", "2021-01-01"),
    }.items():
        out = tmp_path / name
        result = invoke(*label, out, *bound)
        assert result.exit_code == 0, result.output
        assert len(calls_of(out)) == (1 if name == "max-files" else 2)
        got = json.loads((out / ARCHIVE_FILE).read_text())
        assert (
            got["sampled_recordings"] == 4 and got["sampled_segments"] == want["sampled_segments"]
        )
        np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-12)
        np.testing.assert_allclose(got["var"], want["var"], rtol=1e-12)
        assert invoke(*label, out).exit_code == 0  # the rest, with the same statistics
        assert last_summary(out)["archive_statistics"] == {"source": "reused"}
        again = segments_of(out).sort_values(["recording", "segment_index"])
        assert again["recording"].tolist() == rows["recording"].tolist()
        np.testing.assert_allclose(again["p_high"], rows["p_high"], atol=1e-6)


def test_an_engine_failure_while_sampling_is_not_reported_as_a_dataset_write(
    models, tmp_path, monkeypatch
):
    """Issue 18 item 9: an OSError of the engine (here: too many open files) during the
    archive sampling pass is an internal error, not "cannot write to the dataset"; the
    statistics file's own write failing still is the dataset's."""
    from callsort.run.engines import EngineSession

    real = EngineSession.each

    def each(self, recordings, *, on_result, task=None):
        if task is not None and task.kind == "features":
            raise OSError(errno.EMFILE, "Too many open files")
        return real(self, recordings, on_result=on_result, task=task)

    archive = tmp_path / "archive"
    write_archive(archive, range(1, 3))
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(EngineSession, "each", each)
        with pytest.raises(OSError, match="Too many open files") as caught:
            label_run([archive], out=out, model_dir=models["archive"], jobs=1)
    assert not isinstance(caught.value, CallsortError)
    summary = last_summary(out)
    assert summary["exit_code"] == 70
    assert "Too many open files" in summary["error"]
    assert "cannot write to the dataset" not in summary["error"]
    assert not (out / ARCHIVE_FILE).exists()

    from callsort.dataset import writers

    real_atomic = writers.atomic_path

    def full_disk(path):
        if path.name == ARCHIVE_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_atomic(path)

    monkeypatch.setattr(writers, "atomic_path", full_disk)
    with pytest.raises(CallsortError) as caught:
        label_run([archive], out=out, model_dir=models["archive"], jobs=1)
    assert caught.value.exit_code == 2
    assert "cannot write to the dataset" in str(caught.value)
    assert ARCHIVE_FILE in str(caught.value) and "No space left" in str(caught.value)
