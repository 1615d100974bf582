"""Scoring: task metrics, the zero-shot heuristics, GLUE submission files."""
