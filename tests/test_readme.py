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
    _, sections, _ = generated
    in_readme = _examples().sections_in(README)
    assert sorted(in_readme) == sorted(sections)
    for name, text in sections.items():
        assert in_readme[name] == text, (
            f"README section {name} is stale: run python scripts/readme_examples.py"
        )


def test_the_examples_come_from_the_readmes_own_commands(generated):
    workdir, _, _ = generated
    examples = _examples()
    for command in (examples.QUICK_START, examples.NAMED, examples.SUMMARY, examples.AGREEMENT):
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
