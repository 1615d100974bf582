"""The networks: GPT-1 (plain PyTorch) and reading/writing its weights in every format."""
