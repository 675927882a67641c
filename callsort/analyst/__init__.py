"""Analyst tools over a dataset: summary, export, the HTML report."""
