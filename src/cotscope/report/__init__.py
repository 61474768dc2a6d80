"""Plots, tables and reports of a run."""
