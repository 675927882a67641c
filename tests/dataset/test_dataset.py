"""Datasets: incremental runs, partitions, the manifest, crash safety, the lock, cron options.

Real recordings (copies of sample_recordings/) and the real model throughout.
Runs go through ``callsort.run.batch.label`` in this process where that is
enough, and through ``python -m callsort`` in a subprocess where a real second
process or a real SIGKILL is the point.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from callsort.dataset.lock import LOCK_FILE, LockedError, OutputLock
from callsort.dataset.store import MANIFEST, DatasetStore
from callsort.errors import CallsortError
from callsort.model.folder import load_model
from callsort.run.batch import label

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_recordings"
AUDIO = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".wav", ".flac"))
VOICEMAIL = "voicemail_05_mono.flac"
SEGMENT_KEY = ["recording", "channel", "segment_index"]
COMPARED_SEGMENT_COLUMNS = [*SEGMENT_KEY, "start_s", "end_s", "label", "confidence"]


# --- helpers ------------------------------------------------------------------------------


def read(root: Path, table: str) -> pd.DataFrame:
    """``segments/`` or ``calls/`` as one table, the way an analyst's pyarrow reads it."""
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pandas()


def manifest(root: Path) -> pd.DataFrame:
    return pq.read_table(root / MANIFEST).to_pandas()


def part_files(root: Path) -> dict[str, int]:
    """Every partition file and its modification time."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for table in ("segments", "calls")
        for p in (root / table).rglob("*")
        if p.is_file()
    }


def run(archive: Path, out: Path, **options) -> object:
    return label([archive], out=out, jobs=1, **options)


def run_cli(*args: object, env: dict | None = None, cwd: Path | None = None, crash_at: str = ""):
    """``python -m callsort ARGS``; with ``crash_at`` (``STEP[:N]``), killed at that commit step."""
    command = [str(REPO / "tests" / "crash_run.py"), crash_at] if crash_at else ["-m", "callsort"]
    return subprocess.run(
        [sys.executable, *command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def assert_exactly_once(root: Path, recordings: set[str], reference: pd.DataFrame | None = None):
    """Every recording's rows present once; manifest, files and rows agree; nothing left over."""
    calls, segments, rows = read(root, "calls"), read(root, "segments"), manifest(root)
    assert set(calls["recording"]) == recordings
    assert not calls.duplicated(["recording", "channel"]).any(), "duplicate calls rows"
    assert not segments.duplicated(SEGMENT_KEY).any(), "duplicate segments rows"
    assert sorted(rows["recording"]) == sorted(recordings), "manifest: one row per recording"
    referenced = set(rows["calls_file"]) | set(rows["segments_file"]) - {""}
    assert referenced == set(part_files(root)), "every file is in the manifest and exists"
    for row in rows.itertuples():  # each recording's rows live where the manifest says
        in_file = pq.read_table(root / row.calls_file, columns=["recording"]).column(0)
        assert row.recording in in_file.to_pylist(), row.recording
        assert row.date in row.calls_file, row.recording
        n = int((segments["recording"] == row.recording).sum())
        assert n == row.n_segments, row.recording
    assert not (root / ".callsort").exists(), "staging or journal left behind"
    if reference is not None:
        got = segments[COMPARED_SEGMENT_COLUMNS].sort_values(SEGMENT_KEY).reset_index(drop=True)
        want = reference[COMPARED_SEGMENT_COLUMNS].sort_values(SEGMENT_KEY).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_categorical=False)


@pytest.fixture
def archive(tmp_path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in AUDIO:
        shutil.copy2(SAMPLES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Segments of every sample recording, labelled without a dataset."""
    return label([SAMPLES], out=None, jobs=1).segments.to_pandas()


# --- incremental runs ---------------------------------------------------------------------


def test_second_run_over_an_unchanged_archive_processes_nothing(archive, tmp_path, reference):
    out = tmp_path / "dataset"
    first = run(archive, out)
    assert first.n_ok == len(AUDIO)
    assert {p.reason for p in first.planned} == {"new"}
    assert_exactly_once(out, set(AUDIO), reference)
    files, csv_mtime = part_files(out), (out / "calls.csv").stat().st_mtime_ns
    manifest_mtime = (out / MANIFEST).stat().st_mtime_ns

    second = run(archive, out)
    assert second.planned == ()
    assert (second.n_ok, second.n_failed, second.skipped) == (0, 0, len(AUDIO))
    assert part_files(out) == files  # nothing rewritten
    assert (out / MANIFEST).stat().st_mtime_ns == manifest_mtime
    assert (out / "calls.csv").stat().st_mtime_ns == csv_mtime
    assert_exactly_once(out, set(AUDIO), reference)
    summaries = sorted((out / "runs").glob("*.json"))
    assert len(summaries) == 2
    last = json.loads(summaries[-1].read_text())
    assert last["counts"]["skipped_unchanged"] == len(AUDIO)
    assert last["counts"]["processed_ok"] == 0
    assert last["exit_code"] == 0


def test_new_files_alone_are_processed_and_old_partitions_are_not_rewritten(
    archive, tmp_path, reference
):
    out = tmp_path / "dataset"
    run(archive, out)
    files = part_files(out)
    (archive / "later").mkdir()
    shutil.copy(SAMPLES / VOICEMAIL, archive / "later" / "voicemail_copy.flac")
    again = run(archive, out)
    assert [(p.recording.name, p.reason) for p in again.planned] == [
        ("later/voicemail_copy.flac", "new")
    ]
    after = part_files(out)
    assert {k: v for k, v in after.items() if k in files} == files  # old files untouched
    assert len(after) == len(files) + 2  # one new file in segments/ and one in calls/
    copy = reference[reference["recording"] == VOICEMAIL].assign(
        recording="later/voicemail_copy.flac"
    )
    assert_exactly_once(out, {*AUDIO, "later/voicemail_copy.flac"}, pd.concat([reference, copy]))
    # calls.csv at the top is regenerated and holds every recording
    csv = pd.read_csv(out / "calls.csv")
    assert sorted(csv["recording"].unique()) == sorted({*AUDIO, "later/voicemail_copy.flac"})


def test_a_changed_file_replaces_its_rows(archive, tmp_path, reference):
    out = tmp_path / "dataset"
    run(archive, out)
    # the voicemail is replaced by another recording under the same name
    shutil.copy(SAMPLES / "call_02_sad.wav", archive / VOICEMAIL.replace(".flac", ".wav"))
    target = archive / VOICEMAIL
    target.write_bytes((SAMPLES / "call_03_happy.wav").read_bytes())
    again = run(archive, out)
    reasons = {p.recording.name: p.reason for p in again.planned}
    assert reasons == {VOICEMAIL: "changed", "voicemail_05_mono.wav": "new"}
    expected = pd.concat(
        [
            reference[reference["recording"] != VOICEMAIL],
            reference[reference["recording"] == "call_03_happy.wav"].assign(recording=VOICEMAIL),
            reference[reference["recording"] == "call_02_sad.wav"].assign(
                recording="voicemail_05_mono.wav"
            ),
        ]
    )
    assert_exactly_once(out, {*AUDIO, "voicemail_05_mono.wav"}, expected)
    calls = read(out, "calls")
    assert sorted(calls.loc[calls["recording"] == VOICEMAIL, "channel"]) == ["left", "right"]


def test_settings_or_model_change_reprocesses_everything_and_formatting_does_not(
    archive, tmp_path, reference
):
    out = tmp_path / "dataset"
    run(archive, out)
    fingerprint = set(manifest(out)["fingerprint"])
    assert len(fingerprint) == 1
    # output formatting is not part of the fingerprint
    assert run(archive, out, formats=("parquet",), segments_csv=True).planned == ()

    # another model: the shipped booster with a changed byte (and a card that says so)
    model = tmp_path / "model"
    shutil.copytree(load_model().path, model)
    text = (model / "model.txt").read_text()
    (model / "model.txt").write_text(text + "\n")
    card = json.loads((model / "card.json").read_text())
    card["model_sha256"] = ""
    (model / "card.json").write_text(json.dumps(card))
    again = run(archive, out, model_dir=model)
    assert {p.reason for p in again.planned} == {"settings"}
    assert len(again.planned) == len(AUDIO)
    new_fingerprint = set(manifest(out)["fingerprint"])
    assert len(new_fingerprint) == 1 and new_fingerprint != fingerprint
    assert_exactly_once(out, set(AUDIO), reference)  # the same booster: the same labels
    assert run(archive, out, model_dir=model).planned == ()

    # an analysis setting
    from callsort.settings import AnalysisSettings, SegmentationSettings

    shorter = AnalysisSettings(segmentation=SegmentationSettings(max_segment_s=3.0))
    again = run(archive, out, model_dir=model, settings=shorter)
    assert len(again.planned) == len(AUDIO)
    assert_exactly_once(out, set(AUDIO))
    assert read(out, "segments")["duration_s"].max() <= 3.0 + 1e-6

    # --force reprocesses all, with nothing changed
    forced = run(archive, out, model_dir=model, settings=shorter, force=True)
    assert {p.reason for p in forced.planned} == {"forced"}
    assert len(forced.planned) == len(AUDIO)
    assert_exactly_once(out, set(AUDIO))


def test_a_changed_card_relabels_and_what_cannot_change_a_prediction_does_not(tmp_path):
    """Issue 18 item 2: the card's temperature or version (not only its booster) is part of
    the fingerprint; its metrics, creation time, library versions and licence are not."""
    import numpy as np

    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy2(SAMPLES / "call_04_calm.wav", archive / "call_04_calm.wav")
    model = tmp_path / "model"
    shutil.copytree(load_model("fast").path, model)
    card_file = model / "card.json"

    def edit(**fields) -> None:
        card = json.loads(card_file.read_text())
        card.update(fields)
        card_file.write_text(json.dumps(card, indent=2))

    def probabilities(out: Path) -> np.ndarray:
        segments = read(out, "segments").sort_values(["channel", "segment_index"])
        # the model's own probabilities (raw_p_*): p_* are heard in their channel's context
        return segments[[f"raw_p_{c}" for c in ("angry", "calm", "happy", "sad")]].to_numpy()

    out = tmp_path / "dataset"
    first = run(archive, out, model_dir=model)
    assert first.n_ok == 1
    version = json.loads(card_file.read_text())["version"]
    before, old_temperature = probabilities(out), json.loads(card_file.read_text())["temperature"]
    assert (read(out, "calls")["model_version"] == version).all()

    # fields that cannot change a prediction: nothing to do
    edit(metrics={"edited": True}, created_at="2030-01-01T00:00:00+00:00")
    edit(library_versions={"numpy": "0"}, licence="another licence text")
    assert run(archive, out, model_dir=model).planned == ()

    # the temperature: relabelled, and the rows are the old ones at the new temperature
    new_temperature = 2.5 * old_temperature
    edit(temperature=new_temperature)
    again = run(archive, out, model_dir=model)
    assert [(p.recording.name, p.reason) for p in again.planned] == [
        ("call_04_calm.wav", "settings")
    ]
    after = probabilities(out)
    logits = np.log(before) * old_temperature / new_temperature  # softmax(z / T), z = T0 log p0
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(after, expected, atol=1e-9)
    assert np.abs(after - before).max() > 0.05
    assert_exactly_once(out, {"call_04_calm.wav"})

    # the version alone: relabelled, every row names the new version
    edit(version="0.1.0+edited")
    again = run(archive, out, model_dir=model)
    assert [p.reason for p in again.planned] == ["settings"]
    assert again.model_version == "0.1.0+edited"
    assert set(read(out, "calls")["model_version"]) == {"0.1.0+edited"}
    assert set(read(out, "segments")["model_version"]) == {"0.1.0+edited"}
    np.testing.assert_allclose(probabilities(out), after, atol=1e-12)
    assert run(archive, out, model_dir=model).planned == ()


def test_verify_hash_finds_a_change_that_keeps_size_and_mtime(archive, tmp_path):
    out = tmp_path / "dataset"
    run(archive, out, verify_hash=True)
    assert manifest(out)["content_sha256"].str.fullmatch("[0-9a-f]{64}").all()
    target = archive / "call_04_calm.wav"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-2000:] = bytes(2000)  # silence the last samples: same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert run(archive, out, dry_run=True).planned == ()  # size and mtime alone miss it
    again = run(archive, out, verify_hash=True)
    assert [(p.recording.name, p.reason) for p in again.planned] == [
        ("call_04_calm.wav", "content")
    ]
    assert_exactly_once(out, set(AUDIO))


# --- partitions, dates and bounded runs ---------------------------------------------------


@pytest.fixture
def dated_archive(tmp_path) -> Path:
    """The voicemail under three dated folders and one undated one (mtime 2026-01-02 UTC)."""
    folder = tmp_path / "dated"
    for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
        (folder / day).mkdir(parents=True)
        shutil.copy(SAMPLES / VOICEMAIL, folder / day / f"vm_{day}.flac")
    (folder / "misc").mkdir()
    undated = folder / "misc" / "vm_undated.flac"
    shutil.copy(SAMPLES / VOICEMAIL, undated)
    stamp = 1767355200  # 2026-01-02 12:00:00 UTC
    os.utime(undated, (stamp, stamp))
    return folder


def test_date_partitions_dry_run_since_and_max_files(dated_archive, tmp_path):
    out = tmp_path / "dataset"
    pattern = r"(\d{4}-\d{2}-\d{2})/"
    dry = run(dated_archive, out, date_pattern=pattern, dry_run=True)
    assert [(p.date, p.reason) for p in dry.planned] == [
        ("2026-01-02", "new"),
        ("2026-11-23", "new"),
        ("2026-11-24", "new"),
        ("2026-11-25", "new"),
    ]
    assert not out.exists()  # a dry run writes nothing

    first = run(dated_archive, out, date_pattern=pattern, since="2026-11-24", max_files=1)
    assert [p.recording.name for p in first.planned] == ["2026-11-24/vm_2026-11-24.flac"]
    assert (first.outside, first.deferred) == (2, 1)
    second = run(dated_archive, out, date_pattern=pattern)
    assert len(second.planned) == 3

    partitions = sorted(p.name for p in (out / "calls").iterdir())
    assert partitions == [
        "date=2026-01-02",
        "date=2026-11-23",
        "date=2026-11-24",
        "date=2026-11-25",
    ]
    calls = read(out, "calls")
    dates = dict(zip(calls["recording"], calls["date"].astype(str), strict=True))
    assert dates["misc/vm_undated.flac"] == "2026-01-02"  # from the file's mtime
    assert dates["2026-11-25/vm_2026-11-25.flac"] == "2026-11-25"
    assert_exactly_once(out, set(dates))

    # pandas reads each folder as one table too
    assert len(pd.read_parquet(out / "segments")) == len(read(out, "segments"))
    assert len(pd.read_parquet(out / "calls")) == 4


def readme_sql() -> list[str]:
    """Every SQL statement of the README's sql blocks, comments left in."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", readme, re.S)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


def test_every_sql_query_of_the_readme_runs_on_a_real_dataset(tmp_path, monkeypatch):
    """The README's DuckDB queries, on a dataset labelled today (the "last week" query has
    rows), with a recording dated 2026-11-25 (the one-day query) and one that fails."""
    import duckdb

    archive = tmp_path / "archive"
    (archive / "2026-11-25").mkdir(parents=True)
    for name in AUDIO:
        shutil.copy(SAMPLES / name, archive / name)
    shutil.copy(SAMPLES / VOICEMAIL, archive / "2026-11-25" / "vm.flac")
    (archive / "broken.wav").write_bytes(b"RIFF....not a wave file")
    dataset = tmp_path / "data" / "callsort"
    label([archive], out=dataset, jobs=1, date_pattern=r"(\d{4}-\d{2}-\d{2})/")
    reports = tmp_path / "reports"
    shutil.copytree(dataset, reports)  # the What-you-get query reads reports/
    statements = readme_sql()
    assert len(statements) == 6
    monkeypatch.chdir(tmp_path)  # reports/... is relative, as after the quick start
    con = duckdb.connect()
    found = iter(
        [con.sql(sql.replace("/data/callsort", str(dataset))).fetchall() for sql in statements]
    )
    # the demo's one escalation, and the default model's false one: the sad voicemail
    # (here twice, once dated), whose last third it hears as angry (README: What you get)
    # call_06_mono.wav is that call summed to mono; --speakers auto tells its speakers
    # apart, and the customer (heard second: speaker_b) escalates
    escalations = {("call_01_escalation.wav", "right"), ("call_06_mono.wav", "speaker_b")}
    false_alarms = {(VOICEMAIL, "mono"), ("2026-11-25/vm.flac", "mono")}
    escalated = next(found)
    flagged = {r[:2] for r in escalated}
    assert ("call_01_escalation.wav", "right") in flagged <= escalations | false_alarms
    last_week = next(found)
    flagged = {(r[1], r[2]) for r in last_week}
    assert ("call_01_escalation.wav", "right") in flagged <= escalations | false_alarms
    per_day = next(found)
    assert sorted(str(r[0]) for r in per_day) == ["2026-11-25", str(date.today())]
    assert all(0.0 <= r[1] <= 1.0 for r in per_day)
    one_day = next(found)
    day = manifest(dataset).query("date == '2026-11-25'")
    assert sum(n for _, n in one_day) == int(day["n_segments"].sum()) > 0
    failed = next(found)
    assert [r[0] for r in failed] == ["broken.wav"]
    (run_row,) = next(found)
    assert run_row[1:5] == (1, len(AUDIO) + 1, 1, 0)  # exit code 1: broken.wav failed


def test_duckdb_reads_the_dataset_as_the_readme_says(dated_archive, tmp_path):
    import duckdb

    out = tmp_path / "dataset"
    run(dated_archive, out, date_pattern=r"(\d{4}-\d{2}-\d{2})/")
    calls = f"read_parquet('{out}/calls/*/*.parquet', hive_partitioning = true)"
    rows = duckdb.sql(
        f"SELECT date, count(*) FROM {calls} WHERE date >= '2026-11-24' GROUP BY date ORDER BY date"
    ).fetchall()
    assert [(str(d), n) for d, n in rows] == [("2026-11-24", 1), ("2026-11-25", 1)]
    n = duckdb.sql(f"SELECT count(*) FROM '{out}/segments/*/*.parquet'").fetchall()[0][0]
    assert n == len(read(out, "segments"))


# --- the lock -----------------------------------------------------------------------------


def test_a_second_run_is_refused_with_exit_3_naming_the_holder(archive, tmp_path):
    out = tmp_path / "dataset"
    with OutputLock(out, "test-holder"):
        proc = run_cli("label", archive, "--out", out, "-j", 1, "-q")
        assert proc.returncode == 3, proc.stderr
        message = " ".join(proc.stderr.split())
        assert LOCK_FILE in message and "test-holder" in message
        assert f"pid {os.getpid()}" in message and "host" in message and "started" in message
        with pytest.raises(LockedError):  # and in-process, through the Python API
            run(archive, out)
    assert not (out / "calls").exists()  # the refused runs wrote nothing


def test_wait_waits_for_the_holder(archive, tmp_path):
    out = tmp_path / "dataset"
    lock = OutputLock(out, "slow-run")
    lock.acquire()
    proc = subprocess.Popen(
        [sys.executable, "-m", "callsort", "label", str(archive / VOICEMAIL), "--out", str(out)]
        + ["-j", "1", "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        assert proc.poll() is None, "it should be waiting"
    finally:
        lock.release()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "waiting for run slow-run" in " ".join(stderr.split())
    assert set(read(out, "calls")["recording"]) == {VOICEMAIL}


def test_a_stale_lock_is_taken_over(archive, tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    holder = {"run_id": "killed-run", "pid": int(dead.stdout), "host": "here", "started_at": "then"}
    (out / LOCK_FILE).write_text(json.dumps(holder))  # left by a run that died
    result = run(archive / VOICEMAIL, out)
    assert result.n_ok == 1
    assert any("stale lock of run killed-run" in note for note in result.notes)
    assert (out / LOCK_FILE).read_text() == ""  # released


# --- cron ---------------------------------------------------------------------------------


def test_quiet_log_file_and_run_summary(archive, tmp_path):
    out, log = tmp_path / "dataset", tmp_path / "logs" / "callsort.jsonl"
    (archive / "notes.wav").write_text("not audio\n")
    proc = run_cli("label", archive, "--out", out, "-j", 1, "--quiet", "--log-file", log)
    assert proc.returncode == 1, proc.stderr  # one recording failed
    assert proc.stdout == ""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("recording") == len(AUDIO) + 1
    assert "batch_committed" in names
    assert len({e["run_id"] for e in events}) == 1
    failed = [e for e in events if e["event"] == "recording" and e["status"] == "error"]
    assert [e["recording"] for e in failed] == ["notes.wav"]

    (summary_file,) = (out / "runs").glob("*.json")
    summary = json.loads(summary_file.read_text())
    assert summary_file.stem == events[0]["run_id"] == summary["run_id"]
    assert summary["exit_code"] == 1
    counts = summary["counts"]
    assert (counts["processed_ok"], counts["failed"], counts["skipped_unchanged"]) == (
        len(AUDIO),
        1,
        0,
    )
    audio_s = manifest(out)["duration_s"].sum()
    assert summary["audio_hours"] == pytest.approx(audio_s / 3600, abs=1e-3)
    assert summary["wall_s"] > 0
    # the failed recording is not retried unless asked, and a clean rerun exits 0
    proc = run_cli("label", archive, "--out", out, "-j", 1, "-q", "--log-file", log)
    assert proc.returncode == 0, proc.stderr
    retry = run(archive, out, retry_failed=True)
    assert [(p.recording.name, p.reason) for p in retry.planned] == [("notes.wav", "retry")]


def test_dry_run_lists_and_changes_nothing(archive, tmp_path):
    out = tmp_path / "dataset"
    run(archive / VOICEMAIL, out)
    before = part_files(out)
    proc = run_cli("label", archive, "--out", out, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[-1] for line in lines[:-1]] == [n for n in AUDIO if n != VOICEMAIL]
    assert all(line.startswith("new") for line in lines[:-1])
    assert "would process 5 recordings; 1 unchanged" in lines[-1]
    assert part_files(out) == before
    assert len(list((out / "runs").glob("*.json"))) == 1


# --- crash safety -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_archive(tmp_path_factory) -> tuple[Path, set[str]]:
    folder = tmp_path_factory.mktemp("crash") / "archive"
    folder.mkdir()
    for name in AUDIO:
        shutil.copy2(SAMPLES / name, folder / name)
    shutil.copy2(SAMPLES / VOICEMAIL, folder / "voicemail_copy.flac")
    (folder / "broken.wav").write_bytes(b"RIFF....not a wave file")
    return folder, {*AUDIO, "voicemail_copy.flac", "broken.wav"}


def _no_duplicates_visible(out: Path) -> None:
    """What a reader sees at any moment: maybe not every recording yet, never one twice."""
    if not (out / "calls").is_dir():
        return
    calls, segments = read(out, "calls"), read(out, "segments")
    assert not calls.duplicated(["recording", "channel"]).any()
    assert not segments.duplicated(SEGMENT_KEY).any()


def test_sigkill_at_any_commit_step_then_rerun_gives_every_recording_once(
    crash_archive, tmp_path, reference
):
    archive, recordings = tmp_path / "archive", set(crash_archive[1])
    shutil.copytree(crash_archive[0], archive)  # this test adds a file
    out = tmp_path / "dataset"
    common = ("label", archive, "--out", out, "-j", 1, "-q", "--batch-size", 2)
    # each run is killed at another step of the commit protocol; the next run recovers
    for point in ("staged:2", "journal:1", "applying:2", "applied:1", "applying:1"):
        proc = run_cli(*common, crash_at=point)
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr)
        _no_duplicates_visible(out)
    proc = run_cli(*common)
    assert proc.returncode in (0, 1), proc.stderr  # 1 if broken.wav fails in this run
    expected = pd.concat(
        [
            reference,
            reference[reference["recording"] == VOICEMAIL].assign(recording="voicemail_copy.flac"),
        ]
    )
    assert_exactly_once(out, recordings, expected)
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert len(runs) == 1  # killed runs leave no summary
    assert runs[0]["notes"]  # the last run finished what the killed one left

    # killed after its last commit, before calls.csv was regenerated: the next run,
    # with nothing to analyse, still brings calls.csv up to date
    stale = pd.read_csv(out / "calls.csv")
    (archive / "extra").mkdir(exist_ok=True)
    shutil.copy2(SAMPLES / VOICEMAIL, archive / "extra" / "late.flac")
    proc = run_cli(*common, crash_at="csv")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "extra/late.flac" not in set(pd.read_csv(out / "calls.csv")["recording"])
    assert run_cli(*common).returncode in (0, 1)
    fresh = pd.read_csv(out / "calls.csv")
    assert set(fresh["recording"]) == set(stale["recording"]) | {"extra/late.flac"}
    assert not [p for p in out.rglob("*.tmp")]
    recordings = {*recordings, "extra/late.flac"}
    expected = pd.concat(
        [
            expected,
            reference[reference["recording"] == VOICEMAIL].assign(recording="extra/late.flac"),
        ]
    )

    # reprocessing (rows replaced in old files) killed midway, then a plain rerun
    for point in ("applying:1", "staged:2"):
        proc = run_cli(*common, "--force", crash_at=point)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
        _no_duplicates_visible(out)
    assert run_cli(*common).returncode in (0, 1)
    assert_exactly_once(out, recordings, expected)


def test_no_environment_variable_can_kill_a_run(archive, tmp_path):
    """Crash points are the tests' (tests/crash_run.py), not something a run's environment sets."""
    out = tmp_path / "dataset"
    proc = run_cli(
        "label", archive, "--out", out, "-j", 1, "-q", env={"CALLSORT_CRASH_AT": "staged"}
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert_exactly_once(out, set(AUDIO))


def test_sigkill_from_outside_during_a_run_then_rerun(crash_archive, tmp_path, reference):
    archive, recordings = crash_archive
    out = tmp_path / "dataset"
    args = [sys.executable, "-m", "callsort", "label", str(archive), "--out", str(out)]
    args += ["-j", "1", "-q", "--batch-size", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / MANIFEST).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # somewhere after the first commit
    proc.wait(timeout=60)
    _no_duplicates_visible(out)
    done_before = len(manifest(out)) if (out / MANIFEST).exists() else 0
    assert done_before < len(recordings), "the run finished before it could be killed"
    # exit 0 or 1: broken.wav may have failed in the killed run (not retried) or now
    assert run_cli("label", archive, "--out", out, "-j", 1, "-q").returncode in (0, 1)
    expected = pd.concat(
        [
            reference,
            reference[reference["recording"] == VOICEMAIL].assign(recording="voicemail_copy.flac"),
        ]
    )
    assert_exactly_once(out, recordings, expected)


def test_tables_of_the_flat_layout_are_left_alone_with_a_note(archive, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "calls.parquet").write_bytes(b"old")
    result = run(archive / VOICEMAIL, out)
    assert any("calls.parquet" in note and "older callsort" in note for note in result.notes)
    assert (out / "calls.parquet").read_bytes() == b"old"
    assert_exactly_once(out, {VOICEMAIL})


def test_internal_reader_matches_pyarrow(archive, tmp_path):
    out = tmp_path / "dataset"
    run(archive, out)
    table = DatasetStore(out).read("calls").to_pandas()
    assert len(table) == len(read(out, "calls"))


# --- failures named for what they are -----------------------------------------------------


def _summary(out: Path) -> dict:
    (path,) = (out / "runs").glob("*.json")
    return json.loads(path.read_text())


def test_an_oserror_outside_the_dataset_is_not_reported_as_a_dataset_write(
    archive, tmp_path, monkeypatch
):
    """The worker pool cannot start a process (too many open files): an internal error."""
    import errno

    from callsort.run import pool

    def no_more_processes(self):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(pool.WorkerPool, "spawn", no_more_processes)
    out = tmp_path / "dataset"
    with pytest.raises(OSError, match="Too many open files") as caught:
        label([archive], out=out, jobs=2)
    assert not isinstance(caught.value, CallsortError)
    summary = _summary(out)
    assert summary["exit_code"] == 70
    assert "cannot write to the dataset" not in summary["error"]
    assert "Too many open files" in summary["error"]


def test_a_dataset_that_cannot_be_written_is_still_exit_code_2(archive, tmp_path):
    out = tmp_path / "dataset"
    (out / "calls").mkdir(parents=True)
    (out / "segments").write_text("a file where a folder must be")
    with pytest.raises(CallsortError, match="cannot write to the dataset") as caught:
        run(archive, out)
    assert caught.value.exit_code == 2


def test_ctrl_c_is_recorded_as_exit_code_130(archive, tmp_path):
    def interrupt(result):
        raise KeyboardInterrupt

    out = tmp_path / "dataset"
    with pytest.raises(KeyboardInterrupt):
        run(archive, out, on_result=interrupt)
    summary = _summary(out)
    assert summary["exit_code"] == 130
    assert "interrupted" in summary["error"]


def test_ctrl_c_exits_130_and_the_summary_agrees(tmp_path):
    """Ctrl-C while a long recording is analysed, after a first commit."""
    import soundfile as sf
    from conftest import bursts_in_noise

    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "a_broken.wav").write_bytes(b"RIFF....not a wave file")  # committed first
    chunk = bursts_in_noise([(0.5, 4.5), (5.5, 9.5)], 10.0, sr=8000)
    with sf.SoundFile(archive / "b_long_talk.wav", "w", 8000, 1, "PCM_16") as f:
        for _ in range(180):  # 30 minutes: seconds of analysis, interrupted midway
            f.write(chunk)
    out = tmp_path / "dataset"
    args = [sys.executable, "-m", "callsort", "label", str(archive), "--out", str(out)]
    args += ["-j", "1", "-q", "--batch-size", "1"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as in a terminal: a test run started in the background (`pytest &`) ignores
        # SIGINT, and a child inherits that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / MANIFEST).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    summary = _summary(out)
    assert summary["exit_code"] == 130
    assert summary["counts"]["failed"] == 1 and summary["counts"]["processed_ok"] == 0


def test_a_summary_that_cannot_be_written_is_said_and_changes_the_exit_code(archive, tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "runs").write_text("a file where the runs folder must be")
    result = run(archive, out)
    assert result.n_ok == len(AUDIO) and not result.failures
    assert "cannot write the run summary" in result.summary_error
    assert result.exit_code == 2
    assert_exactly_once(out, set(AUDIO))  # the tables themselves were committed
    proc = run_cli("label", archive, "--out", out, "-q", "--force", "-j", 1)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write the run summary" in proc.stderr
    assert "the tables were written" in proc.stderr


def test_a_recording_callsort_fails_on_is_reported_so_and_retried_by_the_next_run(
    archive, tmp_path, monkeypatch
):
    """A bug in callsort (here: segmentation raising on one file) is not the file's fault."""
    from callsort.run import analysis

    real = analysis.speech_segments
    broken = archive / "broken.wav"
    broken.write_bytes(b"RIFF....not a wave file")
    calls = {"n": 0}

    def buggy(energy, zcr, *, settings):
        calls["n"] += 1
        if calls["n"] == 1:  # the first channel of the first recording analysed
            raise ZeroDivisionError("a bug")
        return real(energy, zcr, settings=settings)

    monkeypatch.setattr(analysis, "speech_segments", buggy)
    out = tmp_path / "dataset"
    first = run(archive, out)
    (victim, reason), *rest = [f for f in first.failures if f[0] != "broken.wav"]
    assert not rest
    assert reason.startswith("internal error in callsort, not a fault of the file")
    assert "ZeroDivisionError: a bug" in reason
    rows = manifest(out).set_index("recording")
    assert rows.loc[victim, "status"] == "internal_error"
    assert rows.loc["broken.wav", "status"] == "error"

    second = run(archive, out)  # no --retry-failed: only callsort's own failure is tried again
    assert [(p.recording.name, p.reason) for p in second.planned] == [(victim, "retry")]
    assert second.n_ok == 1 and not second.failures
    assert manifest(out).set_index("recording").loc[victim, "status"] == "ok"
    assert_exactly_once(out, {*AUDIO, "broken.wav"})
