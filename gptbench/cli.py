"""Command line: ``gptbench pretrain|finetune|reproduce|data``.

Every command takes a config (a YAML path or a preset name from experiments/) followed by
``key=value`` overrides, e.g. ``gptbench finetune smoke finetune.task=sst2 finetune.lm_coef=0``.
"""

from __future__ import annotations

import argparse
import sys

from gptbench.checkpoints import CheckpointError
from gptbench.config import ConfigError, load_config
from gptbench.tasks import DataError

USER_ERRORS = (ConfigError, DataError, CheckpointError, FileNotFoundError)


def _pretrain(args) -> None:
    from gptbench.pretrain import run_pretrain

    run_pretrain(load_config(args.config, args.overrides))


def _finetune(args) -> None:
    from gptbench.finetune import run_finetune

    overrides = [f"finetune.task={o.split('=', 1)[1]}" if o.startswith("task=") else o for o in args.overrides]
    run_finetune(load_config(args.config, overrides))


def _reproduce(args) -> None:
    """Pre-train, then fine-tune every task of the preset; finished stages are skipped and
    interrupted ones resumed, so the command can simply be run again."""
    from gptbench.finetune import run_finetune
    from gptbench.pretrain import run_pretrain

    cfg = load_config(args.preset, [*args.overrides, "resume=true"])
    run_pretrain(cfg)
    rows = []
    for task in cfg.tasks:
        cfg.finetune.task = task
        results = run_finetune(cfg)
        for split, metrics in results["metrics"].items():
            rows.append((task, split, ", ".join(f"{m} {100 * v:.1f}" for m, v in metrics.items())))
    print(f"\n{cfg.name}: fine-tuning results (best epoch)")
    for task, split, text in rows:
        print(f"  {task:<12} {split:<16} {text}")


def _data(args) -> None:
    import os
    from pathlib import Path

    from gptbench.config import require_dir
    from gptbench.data_summary import format_summary, summarize
    from gptbench.tasks import get_task

    try:
        spec = get_task(args.task)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    data_dir = args.data_dir or os.environ.get("GPTBENCH_DATA")
    root = require_dir(data_dir, "--data-dir", "GPTBENCH_DATA", "the benchmark data root") if data_dir else None
    source = str(Path(root) / spec.data_subdir) if root else f"hub {spec.hub.path if spec.hub else '(none)'}"
    print(format_summary(spec, summarize(spec, root), source))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_text in (
        ("pretrain", _pretrain, "pre-train a language model on the book corpus"),
        ("finetune", _finetune, "fine-tune on a task (task=NAME)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", help="YAML file or preset name (smoke, mini, paper)")
        p.add_argument("overrides", nargs="*", help="key=value overrides")
        p.set_defaults(fn=fn)
    p = sub.add_parser("data", help="print a task's splits: sizes and label distributions")
    p.add_argument("task")
    p.add_argument("--data-dir", help="benchmark data root (default: $GPTBENCH_DATA; unset = the hub)")
    p.set_defaults(fn=_data)
    p = sub.add_parser("reproduce", help="pre-train and fine-tune every task of a preset")
    p.add_argument("--preset", default="smoke", help="smoke | mini | paper, or a YAML path (default: smoke)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.set_defaults(fn=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except USER_ERRORS as e:
        print(f"gptbench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
