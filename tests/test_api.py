"""The Python API: ``import callsort`` is cheap; label, read_dataset and load_model work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import callsort
from callsort.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_recordings"
HEAVY = ("numpy", "pandas", "pyarrow", "plotly", "lightgbm", "scipy", "librosa", "sklearn")


def _modules_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_callsort_and_the_cli_load_nothing_heavy():
    assert _modules_after("import callsort") == []
    assert _modules_after("import callsort.cli") == []  # so `callsort --help` starts fast
    # the API names are imported on first use
    assert "numpy" in _modules_after("import callsort; callsort.load_model")


def test_api_names():
    assert {"label", "read_dataset", "load_model", "Dataset", "Model"} <= set(dir(callsort))
    assert set(callsort.__all__) <= set(dir(callsort))
    with pytest.raises(AttributeError):
        callsort.no_such_name  # noqa: B018
    from callsort.dataset.reading import read_dataset

    assert callsort.read_dataset is read_dataset


def test_load_model():
    model = callsort.load_model()
    assert isinstance(model, callsort.Model)
    assert model.classes == ["angry", "calm", "happy", "sad"]
    assert model.version


@pytest.fixture(scope="module")
def labelled():
    return callsort.label(SAMPLES, channel_names=("agent", "customer"), jobs=2)


def test_label_returns_dataframes_and_writes_nothing(labelled, tmp_path):
    segments, calls = labelled
    assert isinstance(segments, pd.DataFrame) and isinstance(calls, pd.DataFrame)
    assert isinstance(labelled, callsort.Dataset) and labelled.layout == "memory"
    assert sorted(set(calls["recording"])) == sorted(
        p.name for p in SAMPLES.iterdir() if p.suffix in (".wav", ".flac")
    )
    assert set(calls["channel"]) == {"agent", "customer", "mono"}
    assert (calls["status"] == "ok").all()
    assert len(segments) == calls["n_segments"].sum()
    escalated = calls[calls["escalated"]]
    flagged = set(zip(escalated["recording"], escalated["channel"], strict=True))
    # the ground truth's one escalation is found and no agent is flagged; the default
    # model also flags the sad voicemail's last third (README: What you get)
    assert ("call_01_escalation.wav", "customer") in flagged
    # and in call_01's mono sum, whose speakers --speakers auto tells apart, the customer
    assert ("call_06_mono.wav", "customer") in flagged
    assert flagged <= {
        ("call_01_escalation.wav", "customer"),
        ("call_06_mono.wav", "customer"),
        ("voicemail_05_mono.flac", "mono"),
    }
    assert not any(SAMPLES.glob("*.parquet"))


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory) -> Path:
    """callsort label sample_recordings/ --out r --channel-names agent,customer"""
    from typer.testing import CliRunner

    from callsort.cli import app

    out = tmp_path_factory.mktemp("cli") / "r"
    result = CliRunner().invoke(
        app,
        ["label", str(SAMPLES), "--out", str(out), "--jobs", "1", "-q",
         "--channel-names", "agent,customer"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_label_matches_the_command(labelled, cli_out):
    written = callsort.read_dataset(cli_out)
    cols = ["recording", "channel", "segment_index", "start_s", "end_s", "label"]
    key = ["recording", "channel", "segment_index"]
    pd.testing.assert_frame_equal(
        written.segments[cols].sort_values(key).reset_index(drop=True),
        labelled.segments[cols].sort_values(key).reset_index(drop=True),
    )


def test_label_single_file_and_bad_arguments():
    data = callsort.label(str(SAMPLES / "voicemail_05_mono.flac"), jobs=1)
    assert data.calls["channel"].tolist() == ["mono"]
    with pytest.raises(UsageError):
        callsort.label(SAMPLES, channel_names=("a", "a"))
    with pytest.raises(UsageError):
        callsort.label(SAMPLES, channels="both")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at most 120 s"):  # a worker's memory: issue 18
        callsort.label(SAMPLES, max_segment_s=3600)


def test_readme_python_example_runs(cli_out, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 10)]
    (tmp_path / "sample_recordings").symlink_to(SAMPLES)
    (tmp_path / "r").symlink_to(cli_out)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "call_01_escalation.wav" in printed and "customer" in printed
    assert "partitioned True" in printed
    assert namespace["angry_minutes"] > 0
    assert namespace["model"].classes == ["angry", "calm", "happy", "sad"]


def _speech_file(path: Path, seed: int) -> None:
    import soundfile as sf
    from conftest import speech_like

    with sf.SoundFile(os.fsencode(path), "w", 16_000, 1, "PCM_16") as f:  # bytes: any name
        f.write(speech_like(3.0, seed=seed))


def test_label_accepts_file_names_that_are_not_utf8(tmp_path):
    """A Latin-1 file name: a row named with \\xNN escapes, id hashing the raw bytes."""
    import hashlib

    folder = tmp_path / "calls"
    folder.mkdir()
    _speech_file(folder / os.fsdecode(b"caf\xe9.wav"), seed=1)
    _speech_file(folder / "plain.wav", seed=2)
    segments, calls = callsort.label([folder], jobs=1)
    assert list(calls["recording"]) == ["caf\\xe9.wav", "plain.wav"]
    assert calls["status"].eq("ok").all()
    assert calls["recording_id"].iloc[0] == hashlib.sha1(b"caf\xe9.wav").hexdigest()[:16]
    assert set(segments["recording"]) == {"caf\\xe9.wav", "plain.wav"}


def test_one_identity_per_recording_whatever_the_entry_point(tmp_path):
    """A raw name and a valid name that spell alike: two recordings, the same ids both ways."""
    import pyarrow.parquet as pq

    folder = tmp_path / "calls"
    folder.mkdir()
    _speech_file(folder / os.fsdecode(b"x\xff.wav"), seed=3)
    _speech_file(folder / "x\\xff.wav", seed=4)  # a valid name, spelt as the first one is shown
    _, in_memory = callsort.label([folder], jobs=1)
    run = callsort.run.batch.label([folder], out=tmp_path / "dataset", jobs=1)
    in_dataset = run.calls.to_pandas()
    manifest = pq.read_table(tmp_path / "dataset" / "manifest.parquet").to_pandas()
    for table in (in_memory, in_dataset, manifest):
        assert table["recording_id"].nunique() == table["recording"].nunique() == 2
    by_id = dict(zip(in_memory["recording_id"], in_memory["recording"], strict=True))
    assert by_id == dict(zip(in_dataset["recording_id"], in_dataset["recording"], strict=True))
    assert by_id == dict(zip(manifest["recording_id"], manifest["recording"], strict=True))
    assert "x\\xff.wav" in by_id.values()  # the valid name is kept as it is
