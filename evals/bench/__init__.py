"""``make bench``: what Foreman adds on top of LangGraph, each figure against a baseline
measured in the same run. ``python -m evals.bench`` runs it; see docs/benchmarks.md."""
