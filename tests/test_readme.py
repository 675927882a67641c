"""The README documents what the code does."""

from pathlib import Path

from callsort.schema import call_columns, manifest_columns, markdown_table, segment_columns
from callsort.tables import (
    ESCALATION_MIN_ANGRY_SHARE,
    ESCALATION_MIN_RISE,
    ESCALATION_MIN_SPEECH_S,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_schema_is_the_schema_module():
    assert markdown_table(segment_columns()) in README
    assert markdown_table(call_columns()) in README
    assert markdown_table(manifest_columns()) in README


def test_readme_quick_start_points_at_calls_csv():
    assert "Open `reports/calls.csv`" in README
    assert "## Nightly runs" in README


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
