"""The experiment suite: run identity, sweeps, result files, the paper's numbers, the report."""
