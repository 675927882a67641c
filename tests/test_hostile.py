"""The hostile-input matrix (tests/hostile_cases.py) through the real command, and safe outputs.

One batch holds the sample recordings and every hostile case; it is labelled
once by ``python -m callsort label --jobs 2`` in a real process. As root, that
process runs without CAP_DAC_OVERRIDE, so a file without read permission is
really unreadable to it (plain ``chmod 000`` does not stop root).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
import soundfile as sf
from conftest import bursts_in_noise
from hostile_cases import CASES, ERROR, FORMULA_NAME, OK, make_all, markdown, speech
from test_cli import (
    RECORDINGS,
    SAMPLES,
    assert_same_segments,
    invoke,
    read_tables,
    shown,
)

from callsort.model.folder import load_model
from callsort.run.batch import label

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "hostile-input.md"
BATCH_CASES = [c for c in CASES if c.kind != "deleted"]
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
PR_CAPBSET_DROP = 24


def drop_file_permission_override() -> None:
    """In a child about to exec: drop root's power to ignore file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@functools.cache
def can_drop_override() -> bool:
    try:
        subprocess.run(
            [sys.executable, "-c", "pass"], preexec_fn=drop_file_permission_override, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def must_drop_override() -> bool:
    return os.geteuid() == 0 and can_drop_override()


@functools.cache
def permissions_hold() -> str:
    """Empty if processes from :func:`run_callsort` cannot read a mode-000 file, else why not."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder) / "locked"
        locked.write_bytes(b"secret")
        locked.chmod(0)
        proc = subprocess.run(
            [sys.executable, "-c", f"open({str(locked)!r}, 'rb')"],
            capture_output=True,
            text=True,
            preexec_fn=drop_file_permission_override if must_drop_override() else None,
        )
    if "PermissionError" in proc.stderr:
        return ""
    return "file permissions do not hold here (root that cannot drop CAP_DAC_OVERRIDE?)"


def run_callsort(*args: object, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m callsort ARGS`` in a real process that obeys file permissions, even as root."""
    return subprocess.run(
        [sys.executable, "-m", "callsort", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        preexec_fn=drop_file_permission_override if must_drop_override() else None,
    )


class GrowingWav:
    """Appends audio to a WAV, as a call recorder does, until stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()
        self.file = sf.SoundFile(path, "w", 16_000, 1, "PCM_16")
        self.file.write(speech(1.0))
        self.file.flush()
        self.thread = threading.Thread(target=self._append, daemon=True)

    def _append(self) -> None:
        block = speech(0.05)
        while not self.stop.is_set():
            self.file.write(block)
            self.file.flush()
            time.sleep(0.005)

    def __enter__(self) -> GrowingWav:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.file.close()


# --- the matrix ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean():
    """The sample recordings alone, labelled with the shipped model."""
    return label([SAMPLES], out=None, jobs=2).segments.to_pandas()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Sample recordings plus every case, labelled in one batch by a real process."""
    root = tmp_path_factory.mktemp("hostile")
    batch = root / "batch"
    batch.mkdir()
    for name in RECORDINGS:
        shutil.copy(SAMPLES / name, batch / name)
    make_all(batch)
    out = root / "out"
    with GrowingWav(batch / "growing.wav"):
        time.sleep(0.05)
        started = time.perf_counter()
        proc = run_callsort(
            "label", batch, "--out", out, "--jobs", 2, "--quiet", "--segments-csv", cwd=root
        )
        wall = time.perf_counter() - started
    print(f"\nhostile batch: {len(os.listdir(batch))} files labelled in {wall:.1f} s")
    tables = read_tables(out) if (out / "calls").exists() else None
    return proc, tables, out, batch


def test_batch_exits_1_without_a_traceback(hostile):
    proc, tables, _, _ = hostile
    assert proc.returncode == 1, shown(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, shown(proc)
    assert tables is not None


def test_every_file_has_one_outcome(hostile):
    _, tables, _, _ = hostile
    expected = set(RECORDINGS)
    for case in BATCH_CASES:
        expected |= {case.recording, *case.extra_rows}
    calls = tables.calls
    assert set(calls["recording"]) == expected
    errors = calls[calls["status"] == "error"]
    assert not errors["recording"].duplicated().any()
    assert (errors["channel"] == "").all()
    assert set(calls["status"]) == {"ok", "error"}


@pytest.mark.parametrize("case", BATCH_CASES, ids=[c.title for c in BATCH_CASES])
def test_case(hostile, case):
    _, tables, _, _ = hostile
    calls = tables.calls[tables.calls["recording"] == case.recording]
    segments = tables.segments[tables.segments["recording"] == case.recording]
    assert len(calls) >= 1, f"no row for {case.recording!r}"
    if case.kind == "unreadable" and (why := permissions_hold()):
        pytest.skip(why)
    statuses = set(calls["status"])
    assert statuses == {case.status}, calls[["status", "error"]].to_string()
    if case.status == ERROR:
        (error,) = calls["error"]
        assert case.reason_matches(error), f"{case.recording}: {error!r}"
        assert len(segments) == 0
        for extra in case.extra_rows:
            row = tables.calls[tables.calls["recording"] == extra]
            assert list(row["status"]) == ["error"] and case.reason_matches(row["error"].iloc[0])
    else:
        assert (calls["error"] == "").all()
        case.check(calls, segments)


def test_sample_recordings_come_out_as_in_a_clean_batch(hostile, clean):
    _, tables, _, _ = hostile
    good = tables.segments[tables.segments["recording"].isin(RECORDINGS)]
    assert_same_segments(good, clean, load_model().classes)


def test_no_table_holds_an_absolute_path(hostile):
    _, tables, out, batch = hostile
    for table in (tables.calls, tables.segments):
        for column in table.columns:
            if not pd.api.types.is_string_dtype(table[column]):
                continue
            text = table[column].dropna().astype(str)
            assert not text.str.startswith("/").any(), column
            assert not text.str.contains(str(batch.parent), regex=False).any(), column
    assert (tables.calls["recording"] == "unreadable.wav").any()


def test_formula_file_name_is_neutralised_in_csv_only(hostile):
    _, tables, out, _ = hostile
    assert FORMULA_NAME in set(tables.calls["recording"])  # Parquet keeps the raw name
    csv = pacsv.read_csv(out / "calls.csv").to_pandas()
    assert f"'{FORMULA_NAME}" in set(csv["recording"])
    assert not csv["recording"].str.startswith(("=", "+", "-", "@")).any()
    segments_csv = pacsv.read_csv(out / "segments.csv").to_pandas()
    assert f"'{FORMULA_NAME}" in set(segments_csv["recording"])


def test_probabilities_are_finite_in_every_ok_row(hostile):
    _, tables, _, _ = hostile
    p = tables.segments.filter(like="p_").to_numpy()
    assert np.isfinite(p).all()
    numbers = tables.calls[tables.calls["status"] == "ok"].select_dtypes("number")
    assert np.isfinite(numbers.drop(columns=["angry_share_last_third", "escalation_score"])).all(
        axis=None
    )


@pytest.mark.parametrize("offset", [0.05, -0.2, 0.5])
def test_speech_on_a_dc_offset_is_labelled_as_without_it(tmp_path, offset):
    # a cheap converter's offset once hid speech from 5 % of full scale on
    y = speech()
    for name, signal in (("plain.wav", y), ("offset.wav", y + offset)):
        sf.write(tmp_path / name, signal, 16_000, subtype="FLOAT")
    segments = label([tmp_path], out=None, jobs=1).segments.to_pandas()
    plain, shifted = (
        segments[segments["recording"] == name].reset_index(drop=True)
        for name in ("plain.wav", "offset.wav")
    )
    assert len(plain) >= 2
    np.testing.assert_allclose(shifted[["start_s", "end_s"]], plain[["start_s", "end_s"]])
    # The offset estimate (channels.without_dc) leaves a residue of about 1e-4 of full
    # scale, which moves the lowest bands of the two models of issue 12 a little: up to
    # 0.015 (fast) and 0.036 (default, the encoder's log-mel) in probability; issue 3's
    # model moved by under 1e-3. The labels do not move. (docs/hostile-input.md)
    p = [c for c in segments.columns if c.startswith("p_")]
    np.testing.assert_allclose(shifted[p], plain[p], atol=0.05)
    assert (shifted["label"] == plain["label"]).all()


def test_a_few_turns_in_a_long_quiet_recording_are_found(tmp_path):
    # 3 s of speech in 20 minutes (0.25 %): once below the detector's peak estimate
    turns = [(300.0, 301.5), (900.0, 901.5)]
    path = tmp_path / "sparse.flac"
    sf.write(path, bursts_in_noise(turns, 1200.0, seed=3), 16_000, subtype="PCM_16")
    run = label([path], out=None, jobs=1)
    segments = run.segments.to_pandas()
    assert run.calls.to_pandas()["n_segments"].iloc[0] == len(segments) == 2
    for (start, end), (_, row) in zip(turns, segments.iterrows(), strict=True):
        assert abs(row["start_s"] - start) < 0.1 and abs(row["end_s"] - end) < 0.1


def test_file_deleted_between_listing_and_reading(tmp_path, clean):
    (case,) = [c for c in CASES if c.kind == "deleted"]
    folder = tmp_path / "batch"
    folder.mkdir()
    case.make(folder / case.name)
    shutil.copy(SAMPLES / RECORDINGS[-1], folder / RECORDINGS[-1])

    def delete_after_listing(recordings) -> None:
        assert case.name in [r.name for r in recordings]
        (folder / case.name).unlink()

    run = label([folder], out=tmp_path / "out", jobs=2, on_start=delete_after_listing)
    calls = run.calls.to_pandas().set_index("recording")
    assert calls.loc[case.name, "status"] == "error"
    assert calls.loc[case.name, "error"].startswith(case.reason)
    assert calls.loc[RECORDINGS[-1], "status"] == "ok"
    assert run.n_failed == 1
    assert_same_segments(
        run.segments.to_pandas(),
        clean[clean["recording"] == RECORDINGS[-1]],
        load_model().classes,
    )


def test_report_is_generated_from_the_cases():
    assert DOC.read_text(encoding="utf-8") == markdown(), (
        "docs/hostile-input.md is stale: python tests/hostile_cases.py --markdown "
        "> docs/hostile-input.md"
    )


def test_every_hostile_case_has_a_unique_name_and_an_outcome():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    for case in CASES:
        assert case.status in (OK, ERROR)
        assert (case.check is not None) == (case.status == OK), case.name


# --- safe outputs -------------------------------------------------------------------------


def test_absolute_paths_only_when_asked(tmp_path):
    path = SAMPLES / RECORDINGS[-1]
    result = invoke("label", path, "--out", tmp_path / "rel", "--quiet")
    assert result.exit_code == 0, shown(result)
    assert set(read_tables(tmp_path / "rel").calls["recording"]) == {RECORDINGS[-1]}
    result = invoke("label", path, "--out", tmp_path / "abs", "--quiet", "--absolute-paths")
    assert result.exit_code == 0, shown(result)
    calls = read_tables(tmp_path / "abs").calls
    assert set(calls["recording"]) == {path.resolve().as_posix()}


def dataset_files(out: Path) -> dict[str, bytes]:
    """The bytes of every table, manifest and CSV file of the dataset in ``out``: not
    the per-run summaries in ``runs/``, which a failed run may add, nor callsort's
    working folder ``.callsort/`` (staging files of an interrupted commit, which no
    reader sees and the next run removes)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and p.relative_to(out).parts[0] not in ("runs", ".callsort")
        and p.name != "callsort.lock"
    }


def previous_dataset(out: Path) -> dict[str, bytes]:
    """Label one short recording into ``out``; return its dataset's bytes."""
    result = invoke("label", SAMPLES / RECORDINGS[-1], "--out", out, "--quiet")
    assert result.exit_code == 0, shown(result)
    files = dataset_files(out)
    assert any(name.startswith("calls/date=") for name in files), files
    return files


def test_unwritable_output_folder_fails_cleanly_and_keeps_the_previous_tables(tmp_path):
    if why := permissions_hold():
        pytest.skip(why)
    out = tmp_path / "reports"
    before = previous_dataset(out)
    os.chmod(out, 0o555)
    try:
        proc = run_callsort("label", SAMPLES, "--out", out, "--jobs", 2, "-q", cwd=tmp_path)
    finally:
        os.chmod(out, 0o755)
    assert proc.returncode == 2, shown(proc)
    assert "cannot write" in proc.stderr and "Permission denied" in proc.stderr, shown(proc)
    assert "committed before stays as it was" in proc.stderr, shown(proc)
    assert "Traceback" not in proc.stderr
    assert dataset_files(out) == before


def test_a_subfolder_that_cannot_be_listed_gets_an_error_row(tmp_path):
    """Its recordings cannot even be named: the folder itself is the error row."""
    if why := permissions_hold():
        pytest.skip(why)
    archive = tmp_path / "archive"
    (archive / "locked").mkdir(parents=True)
    shutil.copy2(SAMPLES / "voicemail_05_mono.flac", archive / "open.flac")
    shutil.copy2(SAMPLES / "voicemail_05_mono.flac", archive / "locked" / "hidden.flac")
    os.chmod(archive / "locked", 0)
    try:
        proc = run_callsort("label", archive, "--out", tmp_path / "out", "-q", cwd=tmp_path)
    finally:
        os.chmod(archive / "locked", 0o755)
    assert proc.returncode == 1, shown(proc)
    calls = read_tables(tmp_path / "out").calls.set_index("recording")
    assert sorted(calls.index) == ["locked", "open.flac"]
    assert calls.loc["open.flac", "status"] == "ok"
    assert calls.loc["locked", "status"] == "error"
    assert calls.loc["locked", "error"].startswith(
        "folder that cannot be listed (permission denied)"
    ), calls.loc["locked", "error"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs root and a kernel that lets this container mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {made.stderr.strip() or made}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_fails_cleanly_and_keeps_the_previous_tables(tmp_path, small_tmpfs):
    out = small_tmpfs / "reports"
    before = previous_dataset(out)
    filler = small_tmpfs / "filler"
    free = shutil.disk_usage(small_tmpfs).free
    filler.write_bytes(b"\0" * max(free - 16 * 1024, 0))  # leaves less than the new tables need
    proc = run_callsort("label", SAMPLES, "--out", out, "--jobs", 2, "-q", cwd=tmp_path)
    assert proc.returncode == 2, shown(proc)
    assert "No space left on device" in proc.stderr, shown(proc)
    assert "committed before stays as it was" in proc.stderr, shown(proc)
    assert "Traceback" not in proc.stderr
    assert dataset_files(out) == before
    filler.unlink()
    result = invoke("label", SAMPLES, "--out", out, "--quiet", "-j", 2)  # room again: works
    assert result.exit_code == 0, shown(result)
    tables = read_tables(out)
    assert len(tables.calls) == 11  # each channel of each recording exactly once
    assert not tables.calls.duplicated(["recording", "channel"]).any()
    assert len(set(tables.calls["recording"])) == len(RECORDINGS)
    assert len(tables.segments) > 0
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    leftovers += list((out / ".callsort" / "staging").rglob("*.parquet"))
    assert not leftovers, leftovers  # the rerun cleared what the failed one left


# --- models that do not fit -----------------------------------------------------------------


def model_for_layout(folder: Path, names: list[str]) -> Path:
    """A consistent model folder (card and booster agree) for features named ``names``."""
    from dataclasses import replace

    from callsort.model.classifier import EmotionClassifier
    from callsort.model.folder import save_model

    shipped = load_model()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, len(names))).astype(np.float32)
    y = np.array(shipped.classes)[np.arange(80) % len(shipped.classes)]
    classifier = EmotionClassifier(n_estimators=2, classes=shipped.classes).fit(
        X, y, feature_names=names
    )
    card = replace(
        shipped.card,
        version="test-layout",
        feature_names=names,
        model_sha256="",
        normalisation=None,  # raw features only: the layout is what is under test
    )
    return save_model(classifier, card, folder)


@pytest.mark.parametrize(
    ("layout", "jobs"),
    [("reordered", 1), ("reordered", 2), ("shorter", 1)],
    ids=["reordered-in-process", "reordered-workers", "shorter-in-process"],
)
def test_model_for_another_feature_layout_is_refused(tmp_path, layout, jobs):
    from callsort.features.spectral import feature_names

    names = feature_names(load_model().feature_settings)
    names = names[1:] + names[:1] if layout == "reordered" else names[:-7]
    folder = model_for_layout(tmp_path / "model", names)
    load_model(folder)  # card and booster agree: loading alone cannot tell
    out = tmp_path / "out"
    paths = [SAMPLES / RECORDINGS[-1], SAMPLES / RECORDINGS[0]][:jobs]
    result = invoke("label", *paths, "--model", folder, "--out", out, "-j", jobs, "-q")
    assert result.exit_code == 2, shown(result)
    expected = "in another order" if layout == "reordered" else "features, this callsort computes"
    assert expected in result.output and "another feature layout" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_model_folder_whose_card_does_not_match_its_booster_is_refused(tmp_path):
    import json

    folder = tmp_path / "model"
    shutil.copytree(load_model().path, folder)
    card = json.loads((folder / "card.json").read_text())
    names = card["feature_names"]
    names[0], names[1] = names[1], names[0]  # the booster still has them the other way
    (folder / "card.json").write_text(json.dumps(card))
    result = invoke("label", SAMPLES / RECORDINGS[-1], "--model", folder, "--out", tmp_path / "o")
    assert result.exit_code == 2, shown(result)
    assert "feature names do not match the booster" in result.output
    assert not (tmp_path / "o").exists()


# --- extreme levels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "level",
    [0.0, 1e-38, 1e-20, 1e-6, 1.0, 1e20, 1e30],
    ids=lambda v: f"peak-{v:g}",
)
@pytest.mark.parametrize("shape", ["speech", "square", "alternating", "impulse"])
def test_extreme_levels_give_finite_features_and_probabilities(level, shape):
    from callsort.features.spectral import segment_features
    from callsort.settings import FeatureSettings

    n = 16_000
    y = {
        "speech": speech(1.0),
        "square": np.sign(np.sin(np.arange(n) * 2 * np.pi * 200 / 16_000)),
        "alternating": np.tile([1.0, -1.0], n // 2),
        "impulse": np.eye(1, n, n // 2)[0],
    }[shape]
    y = (y / max(np.abs(y).max(), 1e-30) * level).astype(np.float32)
    model = load_model()
    features = segment_features(y, settings=FeatureSettings(**model.card.feature_settings))
    assert np.isfinite(features).all()
    # one segment, and a channel of three identical ones (zero spread: z-scores must stay finite)
    for channel in (features[np.newaxis, :], np.stack([features] * 3)):
        p = model.channel_proba(channel)
        assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0)
