"""Where a result came from: the checkout's commit, the machine, the command line."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit, if it is a git checkout, with '+dirty' when tracked files outside
    ``results/`` have uncommitted changes. A reproduction writes its result files into the
    committed ``results/<preset>/`` as it runs: those are its output, not a change to the code that
    made them."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
                               cwd=repo, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def software() -> dict:
    """The software and accelerators a number depends on: torch, CUDA and cuDNN as torch was built
    with them, and the GPUs torch sees (none on a CPU machine). A fixed-seed GPU run reproduces bit
    for bit only with the same GPU model and versions."""
    import torch

    on_gpus = torch.version.cuda is not None and torch.cuda.is_available()  # a CPU build has none
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if on_gpus else []
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn, "gpus": gpus}


def command_line() -> str:
    """The command that is running, as a user would type it (``gptbench ...`` for the CLI)."""
    args = list(sys.argv)
    if args and Path(args[0]).name in ("gptbench", "__main__.py", "cli.py"):
        args[0] = "gptbench"
    return shlex.join(args)
