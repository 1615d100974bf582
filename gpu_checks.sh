#!/usr/bin/env bash
# The device checks of issue #26, for a machine with a CUDA GPU: the bit-exact resume tests on
# CUDA (tests/test_gpu.py: GPT, the BERT encoder and a fine-tune, crashed and resumed, on
# synthetic text; no ../shared data needed). Run from anywhere, after `pip install -e .` (with
# pytest). Takes well under 2 minutes; the timeout leaves room to rerun in one 10-minute slot.
set -euo pipefail
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, lightning, torchmetrics; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'lightning', lightning.__version__, 'torchmetrics', torchmetrics.__version__); assert torch.cuda.is_available()"
# -rs names any skip and its reason; --durations shows where the time goes.
timeout 240 python -m pytest -q -p no:cacheprovider -rs --durations=10 tests/test_gpu.py
