"""Regenerate every example output in README.md from the code, and the demo-call figures.

    python scripts/readme_examples.py           # rewrite README.md and benchmarks/results/demo.json
    python scripts/readme_examples.py --check   # exit 1 if README.md is not what the code prints

It runs the README's own commands on a copy of ``sample_recordings/`` (dated
2026-11-25, so that the output does not depend on when the repository was
cloned), with the shipped model, and puts their output between the README's
``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` markers: the "What you
get" tables, the ``callsort summary`` and ``callsort agreement`` blocks, the
agreement of the demo calls with ``sample_recordings/ground_truth.csv`` (also written to
``benchmarks/results/demo.json``, which ``tests/test_cli.py`` checks the model
against) and the schema tables. ``tests/test_readme.py`` keeps README.md equal
to this output. Rerun it whenever the model or the analysis changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SAMPLES = REPO / "sample_recordings"
GROUND_TRUTH = SAMPLES / "ground_truth.csv"
DEMO_RESULTS = REPO / "benchmarks" / "results" / "demo.json"
EXAMPLE_DATE = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
QUICK_START = "callsort label sample_recordings/ --out reports"
"""The quick start's command (README: Quick start), whose tables "What you get" shows."""
NAMED = "callsort label sample_recordings/ --out r --channel-names agent,customer"
"""The Reports section's command, whose dataset ``callsort summary r`` summarises."""
SUMMARY = "callsort summary r"
AGREEMENT = "callsort agreement reports sample_recordings/ground_truth.csv"
"""The quick start's comparison of the demo calls' labels with their ground truth."""
FAST = "callsort label sample_recordings/ --model fast --out reports-fast"
"""The quick start with the fast model: its demo agreement is published beside the default's."""
ACCURACY_RESULTS = {
    "default": REPO / "benchmarks" / "results" / "accuracy-shipped.json",
    "fast": REPO / "benchmarks" / "results" / "accuracy-fast.json",
}
"""The shipped models' figures, written by scripts/train_shipped_models.sh."""
ADAPTATION_RESULTS = REPO / "benchmarks" / "results" / "adaptation.json"
"""The adaptation protocol's figures, written by benchmarks/adaptation.py."""
PROTOCOL_CONDITIONS = ("clean", "telephone", "alaw", "gsm", "g721")
EXAMPLE_CALL = "call_01_escalation.wav"
EXAMPLE_CHANNEL = "right"
CALL_COLUMNS = [
    "recording", "channel", "speech_s", "n_segments", "share_angry", "share_calm",
    "share_happy", "share_sad", "dominant_label", "angry_share_last_third", "escalated",
]  # fmt: skip
SEGMENT_COLUMNS = [
    "recording", "channel", "segment_index", "start_s", "end_s", "label", "confidence",
    "p_angry", "p_calm", "p_happy", "p_sad",
]  # fmt: skip
AGREEMENT_TOLERANCE = 0.002
"""How far the demo agreement may move (a fraction; 0.2 points), overall and per class:
repeated runs here (one process or two workers, in memory or into a dataset) agree to
the last digit; the allowance is for another machine's floating point."""


def run_commands(workdir: Path) -> dict[str, str]:
    """Run the README's commands in ``workdir``; returns the summary command's output."""
    samples = workdir / "sample_recordings"
    shutil.copytree(SAMPLES, samples)
    stamp = EXAMPLE_DATE.timestamp()
    for path in samples.iterdir():
        os.utime(path, (stamp, stamp))
    env = {**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    outputs = {}
    for command in (QUICK_START, NAMED, SUMMARY, FAST, AGREEMENT):
        args = [sys.executable, "-m", "callsort", *command.split()[1:]]
        if command.startswith("callsort label"):
            args.append("--quiet")
        proc = subprocess.run(
            args, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"{command} failed ({proc.returncode}):\n{proc.stderr}")
        outputs[command] = proc.stdout
    return outputs


def _read(dataset: Path, table: str):
    import pyarrow.dataset as ds

    return ds.dataset(dataset / table, format="parquet", partitioning="hive").to_table().to_pandas()


def _markdown(frame) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def what_you_get(workdir: Path) -> dict[str, str]:
    reports = workdir / "reports"
    segments = _read(reports, "segments")
    chosen = segments[
        (segments["recording"] == EXAMPLE_CALL) & (segments["channel"] == EXAMPLE_CHANNEL)
    ]
    chosen = chosen.sort_values("segment_index")[SEGMENT_COLUMNS]
    calls = _read(reports, "calls").sort_values(["recording", "channel"])[CALL_COLUMNS]
    return {"segments-example": _markdown(chosen), "calls-example": _markdown(calls)}


def summary_block(output: str) -> str:
    """The first table of ``callsort summary`` (the per-day and ranking tables follow it)."""
    lines = [line.rstrip() for line in output.splitlines()]
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return "```\n" + "\n".join(lines[: end + 1]) + "\n```"


def agreement_block(output: str) -> str:
    """What ``callsort agreement`` prints on the demo calls, as a code block."""
    return "```\n" + "\n".join(line.rstrip() for line in output.strip("\n").splitlines()) + "\n```"


def demo_agreement(segments, truth) -> dict:
    """Seconds of each ground-truth turn covered by segments, and labelled as the truth says.

    ``segments`` and ``truth`` are DataFrames with recording, channel, start_s, end_s
    and label (segments) or emotion (truth). Returns the agreement over all covered
    speech and per emotion, the share of turn seconds covered (recall) and the share of
    segment seconds inside turns (precision).
    """

    def overlap(a0, a1, b0, b1) -> float:
        return max(0.0, min(a1, b1) - max(a0, b0))

    by_channel = {k: g for k, g in segments.groupby(["recording", "channel"])}
    per_emotion: dict[str, list[float]] = {}
    for turn in truth.itertuples():
        group = by_channel.get((turn.recording, turn.channel), segments.iloc[:0])
        covered = agree = 0.0
        for s in group.itertuples():
            o = overlap(turn.start_s, turn.end_s, s.start_s, s.end_s)
            covered += o
            agree += o if s.label == turn.emotion else 0.0
        totals = per_emotion.setdefault(turn.emotion, [0.0, 0.0, 0.0])
        totals[0] += turn.end_s - turn.start_s
        totals[1] += covered
        totals[2] += agree
    inside = total = 0.0
    for s in segments.itertuples():
        turns = truth[(truth["recording"] == s.recording) & (truth["channel"] == s.channel)]
        total += s.end_s - s.start_s
        inside += sum(
            overlap(s.start_s, s.end_s, a, b)
            for a, b in zip(turns.start_s, turns.end_s, strict=True)
        )
    turn_s, covered_s, agree_s = (sum(t[k] for t in per_emotion.values()) for k in range(3))
    return {
        "agreement": round(agree_s / covered_s, 4),
        "per_class": {e: round(t[2] / max(t[1], 1e-9), 4) for e, t in sorted(per_emotion.items())},
        "covered": round(covered_s / turn_s, 4),
        "inside_turns": round(inside / total, 4),
    }


def demo_results(workdir: Path) -> dict:
    import pandas as pd

    from callsort.model.folder import load_model

    truth = pd.read_csv(GROUND_TRUTH)
    figures = demo_agreement(_read(workdir / "reports", "segments"), truth)
    fast = demo_agreement(_read(workdir / "reports-fast", "segments"), truth)
    return {
        "what": "segment-level agreement of the demo calls with sample_recordings/ground_truth.csv",
        "command": "python scripts/readme_examples.py",
        "model_version": load_model().version,
        "tolerance": AGREEMENT_TOLERANCE,
        **figures,
        "fast": {"model_version": load_model("fast").version, **fast},
    }


def agreement_sentence(results: dict) -> str:
    per_class = ", ".join(f"{e} {v:.1%}" for e, v in results["per_class"].items())
    fast = results["fast"]
    fast_per_class = ", ".join(f"{e} {v:.1%}" for e, v in fast["per_class"].items())
    return (
        "On the demo calls in `sample_recordings/` (8 kHz mu-law, made from actors 23\n"
        "and 24, held out of the shipped models), segment seconds agree with\n"
        f"`sample_recordings/ground_truth.csv` for {results['agreement']:.1%} of the covered\n"
        f"speech with the default model: {per_class} (model\n"
        f"{results['model_version']}); with `--model fast`, {fast['agreement']:.1%}:\n"
        f"{fast_per_class} (model {fast['model_version']}).\n"
        "From `benchmarks/results/demo.json`, written by `python scripts/readme_examples.py`\n"
        "and checked by `tests/test_cli.py`."
    ).replace("%", " %")


def accuracy_table(results: Path) -> str:
    """Macro-F1 of every protocol and test audio, and per-class F1 of the clean headline."""
    metrics = json.loads(results.read_text(encoding="utf-8"))
    protocols = {metrics["headline"]: metrics, **metrics.get("other_protocols", {})}
    lines = [
        "| protocol | clips | " + " | ".join(PROTOCOL_CONDITIONS) + " |",
        "|---|---|" + "---|" * len(PROTOCOL_CONDITIONS),
    ]
    for name, m in protocols.items():
        lines.append(
            f"| {name} | {m['n_clips']} | "
            + " | ".join(f"{m[c]['macro_f1']:.3f}" for c in PROTOCOL_CONDITIONS)
            + " |"
        )
    return "\n".join(lines)


def per_class_line(results: Path) -> str:
    metrics = json.loads(results.read_text(encoding="utf-8"))
    parts = []
    for cond in ("clean", "telephone"):
        f1 = metrics[cond]["per_class_f1"]
        parts.append(f"{cond} " + ", ".join(f"{c} {v:.3f}" for c, v in f1.items()))
    return f"F1 per class, {metrics['headline']}: " + "; ".join(parts) + "."


def adaptation_table(results: Path) -> str:
    """The adaptation protocol's table for the adapter callsort adapt uses."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from adaptation import markdown_table

    return markdown_table(json.loads(results.read_text(encoding="utf-8")))


def schema_tables() -> dict[str, str]:
    from callsort.schema import call_columns, manifest_columns, markdown_table, segment_columns

    return {
        "schema-segments": markdown_table(segment_columns()),
        "schema-calls": markdown_table(call_columns()),
        "schema-manifest": markdown_table(manifest_columns()),
    }


def generate(workdir: Path) -> tuple[dict[str, str], dict]:
    """Every generated README section by name, and the demo results."""
    outputs = run_commands(workdir)
    results = demo_results(workdir)
    sections = {
        **what_you_get(workdir),
        "summary-example": summary_block(outputs[SUMMARY]),
        "agreement-example": agreement_block(outputs[AGREEMENT]),
        "demo-agreement": agreement_sentence(results),
        **{f"accuracy-{name}": accuracy_table(path) for name, path in ACCURACY_RESULTS.items()},
        **{
            f"accuracy-{name}-classes": per_class_line(path)
            for name, path in ACCURACY_RESULTS.items()
        },
        **schema_tables(),
        "adaptation": adaptation_table(ADAPTATION_RESULTS),
    }
    return sections, results


MARKED = re.compile(r"(<!-- generated: ([a-z-]+) -->\n)(.*?)(\n<!-- end: \2 -->)", re.S)


def sections_in(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in MARKED.finditer(text)}


def with_sections(text: str, sections: dict[str, str]) -> str:
    missing = set(sections) - set(sections_in(text))
    if missing:
        raise SystemExit(f"README.md has no markers for {sorted(missing)}")
    return MARKED.sub(lambda m: m.group(1) + sections[m.group(2)] + m.group(4), text)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        sections, results = generate(Path(folder))
    text = README.read_text(encoding="utf-8")
    new = with_sections(text, sections)
    if "--check" in argv:
        if new != text:
            print("README.md differs from what the code prints: run scripts/readme_examples.py")
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    DEMO_RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {README.relative_to(REPO)} and {DEMO_RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
