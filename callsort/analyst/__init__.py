"""Analyst tools over a dataset: summary, export, the HTML report, agreement with a labels file."""
