"""gptbench installed from its wheel (what `pip install .`, `pip install git+...` or an index gives)
runs from a directory outside the checkout: its presets, sweep files and the paper's numbers ship
inside the package."""

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, DATA

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment holding the built wheel; the dependencies (torch & co.) come from
    this environment's site-packages through a .pth line, so nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("install")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "wheel", ROOT, cwd=tmp)
    (wheel,) = (tmp / "wheel").glob("gptbench-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", tmp / "venv", cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip())
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp)
    return tmp / "venv" / "bin"


def test_the_wheel_runs_presets_and_data_outside_the_checkout(installed, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run(installed / "python", "-c", "import gptbench; print(gptbench.__file__)", cwd=outside)
    assert where.startswith(str(installed.parent)), where  # the wheel's copy, not the checkout
    assert "pretrain" in run(installed / "gptbench", "--help", cwd=outside)
    assert "dev" in run(installed / "gptbench", "data", "rte", "--data-dir", DATA, cwd=outside)
    env = {**os.environ, "GPTBENCH_CORPUS": str(CORPUS)}
    run(installed / "gptbench", "pretrain", "smoke", f"runs_dir={outside / 'runs'}", f"cache_dir={outside / 'cache'}",
        "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.n_ctx=32", "tokenizer.vocab_size=300",
        "tokenizer.train_bytes=100000", "corpus.max_bytes=300000", "corpus.val_books=1", "pretrain.max_steps=3",
        "pretrain.warmup_steps=1", "pretrain.val_windows=4", "pretrain.keep_steps=null", cwd=outside, env=env)  # fmt: skip
    assert (outside / "runs" / "smoke" / "pretrain" / "model" / "config.json").is_file()
    # The report's paper numbers come from the package too.
    run(installed / "python", "-c", "from gptbench.suite.paper import load_paper_numbers; load_paper_numbers()",
        cwd=outside)  # fmt: skip


def test_the_wheel_holds_every_module_of_the_checkout(installed):
    """A package missing from pyproject's list would install without its modules."""
    python = installed / "python"
    site_dir = Path(run(python, "-c", "import gptbench, os; print(os.path.dirname(gptbench.__file__))", cwd=installed).strip())
    ours = {p.relative_to(ROOT / "gptbench").as_posix() for p in (ROOT / "gptbench").rglob("*.py")}
    ours |= {f"tasks/{p.name}" for p in (ROOT / "tasks").glob("*.py")}
    ours |= {f"experiments/{p.name}" for p in (ROOT / "experiments").glob("*.yaml")} | {"paper.yaml"}
    shipped = {p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*") if p.suffix in (".py", ".yaml")}
    assert ours - shipped == set()
