"""The Python API: ``import callsort`` is cheap; label, read_dataset and load_model work."""

from __future__ import annotations

import json
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
    from callsort.reading import read_dataset

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
    assert list(zip(escalated["recording"], escalated["channel"])) == [
        ("call_01_escalation.wav", "customer")
    ]
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
