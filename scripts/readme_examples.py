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
against), the "Across machines" promise and the schema tables.
``tests/test_readme.py`` keeps README.md equal to this output, up to what the
promise lets another machine change (:func:`section_differences`: probabilities
within :data:`MACHINE_TOLERANCE`, and the labels of segments whose two top
probabilities are that close). Rerun it whenever the model or the analysis changes.
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
MONO = "callsort label sample_recordings/call_06_mono.wav --out mono --channel-names agent,customer"
"""The Mono calls section's command: the two speakers of the mono demo call."""
"""The quick start with the fast model: its demo agreement is published beside the default's."""
ACCURACY_RESULTS = {
    "default": REPO / "benchmarks" / "results" / "accuracy-shipped.json",
    "fast": REPO / "benchmarks" / "results" / "accuracy-fast.json",
}
"""The shipped models' figures, written by scripts/train_shipped_models.sh."""
ADAPTATION_RESULTS = REPO / "benchmarks" / "results" / "adaptation.json"
"""The adaptation protocol's figures, written by benchmarks/adaptation.py."""
DIARISATION_RESULTS = REPO / "benchmarks" / "results" / "diarisation.json"
"""The mono calls' figures, written by benchmarks/diarisation.py."""
CODE_PATH_RESULTS = {
    "as it is": REPO / "benchmarks" / "results" / "throughput-as-is-20calls.json",
    "`--code-path avx`": REPO / "benchmarks" / "results" / "throughput-avx-20calls.json",
}
"""benchmarks/throughput.py --calls 20 on two code paths of one CPU (README: Performance)."""
COLD_START_RESULTS = REPO / "benchmarks" / "results" / "cold-start.json"
"""benchmarks/cold_start.py: one call labelled from a cold start, before and after."""
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
"""How far the demo agreement may move (a fraction; 0.2 points), overall and per class,
beyond what the segments of :func:`close_calls` can change (:func:`agreement_differences`):
repeated runs here (one process or two workers, in memory or into a dataset) agree to
the last digit."""
MACHINE_TOLERANCE = 0.02
"""callsort's promise across machines (README: Across machines): one recording gives every
segment probabilities within this of those another machine gives, so a segment's label can
differ only where its two highest probabilities are within twice this (a close call), and a
call's figures only through its close calls. benchmarks/cpu_paths.py: the CPU paths tried
gave the same probabilities to the last digit (their embeddings differ by a median 1.6e-6
of a value); embeddings perturbed by 3e-4 of each value moved them by at most 0.018."""
ROUNDING = 0.005
"""The README shows probabilities and shares with two decimals."""


def run_commands(workdir: Path) -> dict[str, str]:
    """Run the README's commands in ``workdir``; returns the summary command's output."""
    samples = workdir / "sample_recordings"
    shutil.copytree(SAMPLES, samples)
    stamp = EXAMPLE_DATE.timestamp()
    for path in samples.iterdir():
        os.utime(path, (stamp, stamp))
    env = {**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    outputs = {}
    for command in (QUICK_START, NAMED, SUMMARY, FAST, AGREEMENT, MONO):
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
    return {
        "segments-example": segments_example(_read(reports, "segments")),
        "calls-example": calls_example(_read(reports, "calls")),
        "mono-example": calls_example(_read(workdir / "mono", "calls")),
    }


def segments_example(segments) -> str:
    """The README's segments table: the example channel's rows of a segments table."""
    chosen = segments[
        (segments["recording"] == EXAMPLE_CALL) & (segments["channel"] == EXAMPLE_CHANNEL)
    ]
    return _markdown(chosen.sort_values("segment_index")[SEGMENT_COLUMNS])


def calls_example(calls) -> str:
    """The README's calls table: some columns of a calls table."""
    return _markdown(calls.sort_values(["recording", "channel"])[CALL_COLUMNS])


def summary_block(output: str) -> str:
    """The first table of ``callsort summary`` (the per-day and ranking tables follow it)."""
    lines = [line.rstrip() for line in output.splitlines()]
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return "```\n" + "\n".join(lines[: end + 1]) + "\n```"


def agreement_block(output: str) -> str:
    """What ``callsort agreement`` prints on the demo calls, as a code block."""
    return "```\n" + "\n".join(line.rstrip() for line in output.strip("\n").splitlines()) + "\n```"


ANY_LABEL = "*"
"""A label that :func:`demo_agreement` counts as agreeing with any turn."""


def demo_agreement(segments, truth) -> dict:
    """Seconds of each ground-truth turn covered by segments, and labelled as the truth says.

    ``segments`` and ``truth`` are DataFrames with recording, channel, start_s, end_s
    and label (segments) or emotion (truth). Returns the agreement over all covered
    speech and per emotion, the share of turn seconds covered (recall) and the share of
    segment seconds inside turns (precision). A segment labelled :data:`ANY_LABEL`
    agrees with every turn.
    """

    def overlap(a0, a1, b0, b1) -> float:
        return max(0.0, min(a1, b1) - max(a0, b0))

    # recordings without ground truth (the mono demo call) are not scored
    segments = segments[segments["recording"].isin(set(truth["recording"]))]
    by_channel = {k: g for k, g in segments.groupby(["recording", "channel"])}
    per_emotion: dict[str, list[float]] = {}
    for turn in truth.itertuples():
        group = by_channel.get((turn.recording, turn.channel), segments.iloc[:0])
        covered = agree = 0.0
        for s in group.itertuples():
            o = overlap(turn.start_s, turn.end_s, s.start_s, s.end_s)
            covered += o
            agree += o if s.label in (turn.emotion, ANY_LABEL) else 0.0
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


def diarisation_table(results: Path) -> str:
    """The Mono calls section's table, as benchmarks/diarisation.py wrote it."""
    return json.loads(results.read_text(encoding="utf-8"))["markdown"]


def code_paths_table(results: dict[str, Path]) -> str:
    """The Performance section's table of the same benchmark on two code paths of one CPU."""
    rows = [
        "| run | CPU | BLAS | numpy SIMD | CTranslate2 | openSMILE / fast model, "
        "`--jobs 2` | openSMILE / default model, `--jobs 2` | fast `--jobs 1` / floor | "
        "fast model's features, in-process s (share) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, path in results.items():
        r = json.loads(path.read_text(encoding="utf-8"))
        path_ = r["code_path"]
        blas = ", ".join(f"{b['internal_api']} {b['architecture']}" for b in path_["blas"])
        simd = path_["numpy_simd"]
        dispatch = " ".join(simd["dispatch"]) or "baseline only"
        stages = r["in_process"]["fast"]["stages"]
        features, total = stages["features"]["cpu_s"], sum(v["cpu_s"] for v in stages.values())
        ratios = r["ratios"]
        rows.append(
            f"| {name}, {r['archive']['calls']} calls ({r['measured_at'][:10]}) | "
            f"{path_['cpu_model']} | {blas} | {' '.join(simd['baseline'])} dispatching "
            f"{dispatch} | {path_['ctranslate2']['selected_isa']} | "
            f"{ratios['fast_jobs2_vs_opensmile_speedup']:.1f}x | "
            f"{ratios['default_jobs2_vs_opensmile_speedup']:.2f}x | "
            f"{ratios['fast_floor_vs_jobs1_end_to_end']:.1f}x | "
            f"{features:.2f} ({features / total:.0%}) |"
        )
    return "\n".join(rows)


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
        "across-machines": across_machines(),
        **schema_tables(),
        "adaptation": adaptation_table(ADAPTATION_RESULTS),
        "diarisation": diarisation_table(DIARISATION_RESULTS),
        "code-paths": code_paths_table(CODE_PATH_RESULTS),
        "cold-start": json.loads(COLD_START_RESULTS.read_text(encoding="utf-8"))["markdown"],
    }
    return sections, results


def quick_start_segments(workdir: Path):
    """The segments table of the quick start's run in ``workdir`` (after :func:`generate`),
    with the Mono calls section's (its own recording and channels)."""
    import pandas as pd

    mono = _read(workdir / "mono", "segments")
    return pd.concat([_read(workdir / "reports", "segments"), mono], ignore_index=True)


# --- the promise across machines ---------------------------------------------------------


def across_machines() -> str:
    """The README's "Across machines" paragraph, from :data:`MACHINE_TOLERANCE`."""
    x = MACHINE_TOLERANCE
    return (
        "The same recording gives the same labels on any machine, up to close calls:\n"
        f"every probability stays within {x} of what another machine computes, so a\n"
        "segment's label can differ only where its two highest probabilities are within\n"
        f"{2 * x:g} of each other, and a call's figures only through such segments.\n"
        "The speech encoder runs in float32: on every CPU path we could try\n"
        "(CTranslate2's generic, AVX and AVX2 kernels, through Intel MKL or oneDNN;\n"
        "NumPy and OpenBLAS without AVX2) the demo calls' probabilities came out the same\n"
        "to the last digit, and perturbing the embedding by a hundred times the paths'\n"
        "typical difference moved them by at most 0.018. CTranslate2's int8 kernels\n"
        "differ by CPU: between the kernels of one machine they moved the demo calls'\n"
        "probabilities by up to 0.18 (`benchmarks/cpu_paths.py`). The tests check the\n"
        "promise on the demo calls, against the examples above and between CPU code\n"
        "paths (`tests/test_cpu_paths.py`). OpenBLAS's results depend on its thread\n"
        "count too, by float32 rounding: labelling and training both compute features\n"
        "on one BLAS thread, so `callsort evaluate --check-card` reproduces a card\n"
        "whatever thread count the host gives BLAS (`OPENBLAS_NUM_THREADS`)."
    )


def close_calls(segments):
    """Which rows of a segments table are close calls: their two highest probabilities
    are within ``2 * MACHINE_TOLERANCE`` (another machine may label them otherwise)."""
    import numpy as np

    p = np.sort(segments[[c for c in segments.columns if c.startswith("p_")]].to_numpy(), axis=1)
    return (p[:, -1] - p[:, -2]) <= 2 * MACHINE_TOLERANCE


def markdown_rows(table: str) -> list[dict[str, str]]:
    """The rows of a markdown table (as :func:`_markdown` writes them) as dicts."""
    lines = [line.strip().strip("|").split("|") for line in table.strip().splitlines()]
    header = [cell.strip() for cell in lines[0]]
    return [dict(zip(header, (cell.strip() for cell in row), strict=True)) for row in lines[2:]]


def section_differences(name: str, in_readme: str, now: str, segments) -> list[str]:
    """Where README section ``name`` breaks the promise against the code's output ``now``.

    ``segments``: the segments table of the quick start's run that made ``now``. The
    tables of "What you get" and the summary may differ from ``now`` as another machine
    may (:data:`MACHINE_TOLERANCE`); every other section must equal it.
    """
    if in_readme == now:
        return []
    if name == "segments-example":
        return _segment_differences(in_readme, now, segments)
    if name in ("calls-example", "mono-example"):
        return _call_differences(in_readme, now, segments)
    if name == "summary-example":
        return _summary_differences(in_readme, now, segments)
    if name == "demo-agreement":  # quotes the results file, which must keep the promise
        import pandas as pd

        published = json.loads(DEMO_RESULTS.read_text(encoding="utf-8"))
        quoted = in_readme == agreement_sentence(published)
        return (
            [] if quoted else [f"demo-agreement: not the figures of {DEMO_RESULTS.name}"]
        ) + agreement_differences(segments, pd.read_csv(GROUND_TRUTH), published)
    return [f"{name}: differs from what the code prints"]


def _segment_differences(in_readme: str, now: str, segments) -> list[str]:
    close = segments[close_calls(segments)]
    out = []
    old_rows, new_rows = markdown_rows(in_readme), markdown_rows(now)
    if len(old_rows) != len(new_rows):
        return [f"segments-example: {len(old_rows)} rows, the code prints {len(new_rows)}"]
    for old, new in zip(old_rows, new_rows, strict=True):
        where = f"segments-example row {old['segment_index']}"
        for key in ("recording", "channel", "segment_index", "start_s", "end_s"):
            if old[key] != new[key]:
                out.append(f"{where}: {key} {old[key]}, the code prints {new[key]}")
        is_close = (
            (close["recording"] == new["recording"])
            & (close["channel"] == new["channel"])
            & (close["segment_index"] == int(new["segment_index"]))
        ).any()
        if old["label"] != new["label"] and not is_close:
            out.append(f"{where}: label {old['label']}, the code prints {new['label']}")
        for key in ("confidence", "p_angry", "p_calm", "p_happy", "p_sad"):
            if abs(float(old[key]) - float(new[key])) > MACHINE_TOLERANCE + ROUNDING:
                out.append(f"{where}: {key} {old[key]}, the code prints {new[key]}")
    return out


def _close_share(segments, recording: str | None = None, channel: str | None = None) -> float:
    """The share of speech seconds (of a channel, or of all) in close calls."""
    rows = segments
    if recording is not None:
        rows = rows[(rows["recording"] == recording) & (rows["channel"] == channel)]
    seconds = rows["end_s"] - rows["start_s"]
    return float(seconds[close_calls(rows)].sum() / max(seconds.sum(), 1e-9))


def _call_differences(in_readme: str, now: str, segments) -> list[str]:
    out = []
    old_rows, new_rows = markdown_rows(in_readme), markdown_rows(now)
    if [(r["recording"], r["channel"]) for r in old_rows] != [
        (r["recording"], r["channel"]) for r in new_rows
    ]:
        return ["calls-example: other recordings or channels than the code prints"]
    for old, new in zip(old_rows, new_rows, strict=True):
        where = f"calls-example {old['recording']} {old['channel']}"
        allowed = _close_share(segments, new["recording"], new["channel"])
        fixed = ["speech_s", "n_segments"]
        if allowed == 0:  # no close call: the labels, and so every figure, are the same
            fixed += ["dominant_label", "angry_share_last_third", "escalated"]
        for key in fixed:
            if old[key] != new[key]:
                out.append(f"{where}: {key} {old[key]}, the code prints {new[key]}")
        for key in (k for k in new if k.startswith("share_")):
            if abs(float(old[key]) - float(new[key])) > allowed + ROUNDING:
                out.append(f"{where}: {key} {old[key]}, the code prints {new[key]}")
    return out


def _summary_differences(in_readme: str, now: str, segments) -> list[str]:
    allowed = _close_share(segments)
    out = []
    old_lines, new_lines = in_readme.splitlines(), now.splitlines()
    if len(old_lines) != len(new_lines):
        return ["summary-example: other lines than the code prints"]
    for old, new in zip(old_lines, new_lines, strict=True):
        if old == new or (allowed > 0 and "escalated calls" in new):
            continue
        if "speech by label" in new:
            shares = [re.findall(r"([a-z]+) (\d+)%", line) for line in (old, new)]
            if [k for k, _ in shares[0]] == [k for k, _ in shares[1]] and all(
                abs(int(a) - int(b)) / 100 <= allowed + ROUNDING
                for (_, a), (_, b) in zip(*shares, strict=True)
            ):
                continue
        out.append(f"summary-example: {old.strip()} / the code prints {new.strip()}")
    return out


def agreement_differences(segments, truth, published: dict) -> list[str]:
    """Where the demo agreement of ``segments`` breaks the promise against ``published``
    (``benchmarks/results/demo.json`` or its ``fast`` entry): the close calls may go
    either way, and :data:`AGREEMENT_TOLERANCE` more."""
    close = close_calls(segments)
    low = demo_agreement(segments.assign(label=segments["label"].where(~close, "")), truth)
    high = demo_agreement(segments.assign(label=segments["label"].where(~close, ANY_LABEL)), truth)
    tol = AGREEMENT_TOLERANCE
    out = []
    pairs = [("agreement", published["agreement"], low["agreement"], high["agreement"])]
    if sorted(published["per_class"]) != sorted(low["per_class"]):
        return [f"classes {sorted(low['per_class'])}, published {sorted(published['per_class'])}"]
    for emotion, value in published["per_class"].items():
        pairs.append((emotion, value, low["per_class"][emotion], high["per_class"][emotion]))
    for what, value, lo, hi in pairs:
        if not lo - tol <= value <= hi + tol:
            out.append(f"{what}: published {value}, the code gives {lo} to {hi}")
    return out


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
        segments = quick_start_segments(Path(folder))
    text = README.read_text(encoding="utf-8")
    new = with_sections(text, sections)
    if "--check" in argv:
        in_readme = sections_in(text)
        differences = [
            line
            for name, now in sections.items()
            for line in section_differences(name, in_readme.get(name, ""), now, segments)
        ]
        for line in differences:
            print(line)
        if differences:
            print("README.md breaks the promise against what the code prints: run this script")
            return 1
        if new != text:
            print(f"README.md is within the promise (MACHINE_TOLERANCE {MACHINE_TOLERANCE}) of")
            print("what the code prints here, not equal to it (another machine made it)")
        return 0
    README.write_text(new, encoding="utf-8")
    DEMO_RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {README.relative_to(REPO)} and {DEMO_RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
