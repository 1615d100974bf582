#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command of under 10 minutes (an H100/H200):
#   1. the bit-exact resume tests on CUDA (tests/test_gpu.py: GPT, the BERT encoder and a fine-tune,
#      crashed and resumed, on synthetic text; a pre-training and a fine-tune under torch's sync
#      debug mode, no host-device synchronisation outside logging and checkpoint steps) and the speed
#      levers' CUDA tests (the padded LM head and the chunked loss at GPT-1's vocabulary, the
#      compiled step against eager);
#   2. `gptbench bench --device cuda`: the GPU table (raw step against transformers, padded, chunked
#      loss and compiled against eager, MFU against the bf16 matmul rate measured in the same run,
#      the paper preset through the Trainer and with deterministic flipped, fine-tuning examples/s
#      of the preset against eager), written to OUT/bench_gpu.json as the figures come (a timeout
#      keeps what was measured).
# Needs neither ../shared nor spaCy. Run from anywhere after `pip install -e ".[test]"`:
#   bash benchmarks/gpu_checks.sh [OUT]      (OUT defaults to results/bench)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/bench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, lightning, torchmetrics; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'lightning', lightning.__version__, 'torchmetrics', torchmetrics.__version__); assert torch.cuda.is_available()" || exit 1
# -rs names any skip and its reason; --durations shows where the time goes.
timeout 150 python -m pytest -q -p no:cacheprovider -rs --durations=10 tests/test_gpu.py
timeout 90 python -m pytest -q -p no:cacheprovider -rs tests/test_gpu_speed_levers.py -k on_cuda
timeout 360 gptbench bench --device cuda --reps 5 --steps 3 --out "$out"
