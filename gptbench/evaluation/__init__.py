"""Scoring: task metrics, text generation, GLUE submission files."""
