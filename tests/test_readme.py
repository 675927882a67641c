"""The README documents what the code does."""

import json
from pathlib import Path

import pandas as pd
import pytest

from callsort.dataset.tables import (
    ESCALATION_MIN_ANGRY_SHARE,
    ESCALATION_MIN_RISE,
    ESCALATION_MIN_SPEECH_S,
)
from callsort.schema import call_columns, manifest_columns, markdown_table, segment_columns

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_schema_is_the_schema_module():
    assert markdown_table(segment_columns()) in README
    assert markdown_table(call_columns()) in README
    assert markdown_table(manifest_columns()) in README


def test_readme_states_the_escalation_rule_in_force():
    assert f"angry_share_last_third >= {ESCALATION_MIN_ANGRY_SHARE}" in README
    assert f"escalation_score >= {ESCALATION_MIN_RISE}" in README
    assert f"at least {ESCALATION_MIN_SPEECH_S:g} s of speech in the last third" in README


def test_readme_performance_tables_are_the_latest_benchmark_results():
    """The Performance section is copied from benchmarks/results/throughput.json."""
    import json

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "throughput.json"
    markdown = json.loads(results.read_text())["markdown"]
    tables = [line for line in markdown.splitlines() if line.startswith("|")]
    assert tables and all(line in README for line in tables)


# --- example outputs: what scripts/readme_examples.py generates from the code -------------


def _examples():
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    import readme_examples

    return readme_examples


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The README's commands run on the demo calls, and the sections made from their output."""
    workdir = tmp_path_factory.mktemp("readme")
    sections, results = _examples().generate(workdir)
    return workdir, sections, results


def test_readme_example_outputs_are_what_the_code_prints_now(generated):
    """Every generated section is what the code prints, up to what the promise "Across
    machines" lets another machine change: probabilities within MACHINE_TOLERANCE, and
    the labels (and call figures) of close calls only."""
    workdir, sections, _ = generated
    examples = _examples()
    in_readme = examples.sections_in(README)
    assert sorted(in_readme) == sorted(sections)
    segments = examples.quick_start_segments(workdir)
    for name, text in sections.items():
        differences = examples.section_differences(name, in_readme[name], text, segments)
        assert not differences, (
            f"README section {name} is stale: run python scripts/readme_examples.py\n"
            + "\n".join(differences)
        )


def test_readme_states_the_promise_across_machines():
    examples = _examples()
    assert "## Across machines" in README or "### Across machines" in README
    assert examples.sections_in(README)["across-machines"] == examples.across_machines()
    assert f"within {examples.MACHINE_TOLERANCE} of what another machine computes" in README


def test_the_promise_lets_a_readme_differ_only_within_it():
    """The comparison the README test makes: a probability moved within the tolerance,
    or the label of a close call, passes; more, or a firm label changed, does not."""
    import pandas as pd

    examples = _examples()
    x = examples.MACHINE_TOLERANCE
    header = "| recording | channel | segment_index | start_s | end_s | label | confidence | p_angry | p_calm | p_happy | p_sad |\n|---|---|---|---|---|---|---|---|---|---|---|\n"

    def table(*rows):
        return header + "\n".join(
            f"| a.wav | right | {i} | {i}.00 | {i}.50 | {label} | {max(p):.2f} | "
            + " | ".join(f"{v:.2f}" for v in p)
            + " |"
            for i, (label, p) in enumerate(rows)
        )

    firm, close = (0.05, 0.80, 0.10, 0.05), (0.34, 0.29, 0.02, 0.35)  # margins 0.70, 0.01
    segments = pd.DataFrame(
        {
            "recording": ["a.wav", "a.wav"],
            "channel": ["right", "right"],
            "segment_index": [0, 1],
            "start_s": [0.0, 1.0],
            "end_s": [0.5, 1.5],
            "label": ["calm", "sad"],
            **{
                f"p_{c}": [firm[k], close[k]]
                for k, c in enumerate(("angry", "calm", "happy", "sad"))
            },
        }
    )
    now = table(("calm", firm), ("sad", close))
    diff = examples.section_differences
    assert diff("segments-example", now, now, segments) == []
    moved = table(
        ("calm", (0.05, 0.80 - x, 0.10 + x, 0.05)), ("sad", (0.34 - x, 0.29, 0.02, 0.35 + x))
    )
    assert diff("segments-example", moved, now, segments) == []
    close_flip = table(("calm", firm), ("angry", (0.35, 0.29, 0.02, 0.34)))
    assert diff("segments-example", close_flip, now, segments) == []
    too_far = table(("calm", (0.05, 0.80 - 3 * x, 0.10 + 3 * x, 0.05)), ("sad", close))
    assert diff("segments-example", too_far, now, segments)
    firm_flip = table(("happy", firm), ("sad", close))
    assert diff("segments-example", firm_flip, now, segments) == [
        "segments-example row 0: label happy, the code prints calm"
    ]
    assert diff("schema-segments", "a", "b", segments)


def test_the_examples_come_from_the_readmes_own_commands(generated):
    workdir, _, _ = generated
    examples = _examples()
    for command in (
        examples.QUICK_START,
        examples.NAMED,
        examples.SUMMARY,
        examples.AGREEMENT,
        examples.MONO,
    ):
        said = (f"\n{command}\n", f"&& {command}\n", f"`{command}` prints")
        assert any(text in README for text in said), command
    # the quick start's promise: reports/calls.csv, one row per call channel
    calls = pd.read_csv(workdir / "reports" / "calls.csv")
    assert "Open `reports/calls.csv`: one row per call channel" in README
    assert not calls.duplicated(["recording", "channel"]).any()
    assert len(calls) == len(generated[1]["calls-example"].splitlines()) - 2


def test_readme_demo_figures_are_the_results_file():
    """The README quotes benchmarks/results/demo.json, which tests/test_cli.py checks."""
    examples = _examples()
    results = json.loads(examples.DEMO_RESULTS.read_text(encoding="utf-8"))
    assert examples.sections_in(README)["demo-agreement"] == examples.agreement_sentence(results)


def test_readme_diarisation_table_is_the_results_file():
    """The Mono calls table is benchmarks/results/diarisation.json's, made with the
    one-speaker threshold callsort ships."""
    examples = _examples()
    results = json.loads(examples.DIARISATION_RESULTS.read_text(encoding="utf-8"))
    assert examples.sections_in(README)["diarisation"] == results["markdown"]
    from callsort.settings import DiarisationSettings

    assert results["threshold_shipped"] == DiarisationSettings().min_separation
    assert f"silhouette of the segments under {DiarisationSettings().min_separation}," in README


def test_readme_code_paths_table_is_the_results_files():
    """The Performance section's table of two code paths is made from the two throughput
    results files it names, and each of them ran on the code path its row says."""
    examples = _examples()
    assert examples.sections_in(README)["code-paths"] == examples.code_paths_table(
        examples.CODE_PATH_RESULTS
    )
    paths = {}
    for name, path in examples.CODE_PATH_RESULTS.items():
        results = json.loads(path.read_text(encoding="utf-8"))
        paths[name] = results["code_path"]["name"]
        assert path.name in README
        assert ("--code-path avx" in results["command"]) == (paths[name] == "avx")
    assert sorted(paths.values()) == ["as-is", "avx"]


def test_readme_cold_start_table_is_the_results_file():
    examples = _examples()
    results = json.loads(examples.COLD_START_RESULTS.read_text(encoding="utf-8"))
    assert examples.sections_in(README)["cold-start"] == results["markdown"]
    assert results["command"].startswith("python benchmarks/cold_start.py --against ")


def test_readme_adaptation_table_is_the_results_file():
    """The README's adaptation table is benchmarks/results/adaptation.json's, and the
    adapter and lambda it shows are what callsort adapt uses."""
    examples = _examples()
    table = examples.adaptation_table(examples.ADAPTATION_RESULTS)
    assert examples.sections_in(README)["adaptation"] == table
    from adaptation import PRODUCT  # benchmarks/, put on the path by adaptation_table

    from callsort.training.adapt import ADAPTER_KIND, DEFAULT_LAMBDA

    variant, lam = PRODUCT["default"]
    assert variant.split("-")[0] == ADAPTER_KIND and float(lam) == DEFAULT_LAMBDA
