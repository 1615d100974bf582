"""The experiment suite: sweeps, result files, the paper's numbers, the report."""
