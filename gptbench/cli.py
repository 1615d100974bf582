"""Command line: gptbench pretrain|finetune|reproduce|sweep|report|zeroshot|generate|fill-mask|data|bench.

Every command takes a config (a YAML path or a preset name from experiments/) followed by
key=value overrides, e.g. gptbench finetune smoke finetune.task=sst2 finetune.lm_coef=0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gptbench.models.checkpoints import CheckpointError
from gptbench.config import ConfigError, load_config
from gptbench.errors import CorpusError, NoNextTokenModel, NonFiniteLoss, RunLocked
from gptbench.tasks import DataError

CHECKPOINT_HELP = "gptbench model dir, .ckpt, Hugging Face openai-gpt dir or OpenAI model/ dir"
USER_ERRORS = (ConfigError, DataError, CheckpointError, CorpusError, NoNextTokenModel, NonFiniteLoss, RunLocked,
               FileNotFoundError)  # fmt: skip


def _pretrain(args) -> None:
    from gptbench.training.pretrain import run_pretrain

    run_pretrain(load_config(args.config, args.overrides))


def _finetune(args) -> None:
    from gptbench.training.finetune import run_finetune

    overrides = [f"finetune.task={o.split('=', 1)[1]}" if o.startswith("task=") else o for o in args.overrides]
    run_finetune(load_config(args.config, overrides))


def _reproduce(args) -> None:
    """Run the preset's sweeps (``reproduce.sweeps``: Tables 2-5 and both panels of Figure 2 for
    every task whose data is present), then write the report. Finished runs are skipped and
    interrupted ones resumed, so the command can simply be rerun."""
    from gptbench.suite.report import write_report
    from gptbench.suite.sweep import run_sweep, split_overrides

    _, experiment = split_overrides(args.overrides)
    plan = load_config(args.preset, experiment).reproduce
    for sweep in plan.sweeps:
        print(f"\n== {sweep} ==", flush=True)
        results_dir = run_sweep(sweep, args.preset, [*plan.arguments(sweep), *args.overrides])
    for path in write_report(results_dir):
        if path.suffix == ".md":
            print(f"\n{path.read_text()}\nreport: {path}")


PREPARE_KEYS = ("out", "tasks", "rows", "compress")


def _prepare(args) -> None:
    """Tokenize everything the preset's reproduction (or tasks=[...]) reads into out=DIR."""
    from gptbench.data.prepared import ROWS, open_prepared, prepare, reproduction_configs, sizes
    from gptbench.suite.sweep import split_overrides

    options = _options("prepare", [o for o in args.overrides if o.split("=", 1)[0] in PREPARE_KEYS], PREPARE_KEYS)
    overrides = [o for o in args.overrides if o.split("=", 1)[0] not in PREPARE_KEYS]
    if "out" not in options:
        raise ConfigError("prepare: out=DIR is required (the directory to write)")
    if options.get("rows", "drawn") not in ROWS or options.get("compress", "false").lower() not in ("true", "false"):
        raise ConfigError(f"prepare: rows= takes {list(ROWS)} and compress= true or false, got "
                          f"rows={options.get('rows')!r} compress={options.get('compress')!r}")  # fmt: skip
    tasks = split_overrides([f"tasks={options['tasks']}"])[0]["tasks"] if "tasks" in options else None
    tasks = [tasks] if isinstance(tasks, str) else tasks
    size = prepare(options["out"], reproduction_configs(args.preset, overrides, tasks), options.get("rows", "drawn"),
                   options.get("compress", "false").lower() == "true")  # fmt: skip
    by_kind = sorted(sizes(open_prepared(options["out"]).manifest).items())
    parts = ", ".join(f"{kind} {n / 2**20:,.1f}" for kind, n in by_kind)
    print(f"prepared {options['out']}: {size / 2**20:,.1f} MiB ({size:,} bytes; MiB by kind: {parts}); run with "
          f"prepared={options['out']} or GPTBENCH_PREPARED")  # fmt: skip


def _sweep(args) -> None:
    from gptbench.suite.sweep import run_sweep

    print(f"results in {run_sweep(args.table, args.preset, args.overrides)}")


def _report(args) -> None:
    from gptbench.suite.report import write_report

    try:
        paths = write_report(Path(args.results_dir), scales=args.scales)
    except ValueError as e:  # a missing directory or a malformed result file, named in the message
        raise ConfigError(str(e)) from None
    for path in paths:
        print(path)


def _data(args) -> None:
    import os

    from gptbench.config import require_dir
    from gptbench.data.summary import format_summary, summarize
    from gptbench.tasks import get_task

    try:
        spec = get_task(args.task)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    data_dir = args.data_dir or os.environ.get("GPTBENCH_DATA")
    root = require_dir(data_dir, "--data-dir", "GPTBENCH_DATA", "the benchmark data root") if data_dir else None
    source = str(Path(root) / spec.data_subdir) if root else f"hub {spec.hub.path if spec.hub else '(none)'}"
    print(format_summary(spec, summarize(spec, root), source))


ZEROSHOT_KEYS = ("tasks", "max_examples", "data_dir", "gpt1_dir", "out", "device", "prepared")
GENERATE_KEYS = ("max_new_tokens", "strategy", "num_beams", "length_penalty", "temperature", "top_k", "top_p",
                 "num_return_sequences", "seed", "context", "gpt1_dir", "device")  # fmt: skip
FILL_MASK_KEYS = ("top_k", "device")


def _options(command: str, overrides: list[str], keys: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` arguments of a command that takes a checkpoint rather than a config."""
    opts = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or key not in keys:
            raise ConfigError(f"{command}: expected key=value with key in {list(keys)}, got {o!r}")
        opts[key] = value
    return opts


def _zeroshot(args) -> None:
    """The paper's zero-shot heuristics (Section 5) on a checkpoint: print a table, optionally JSON."""
    import os

    from gptbench.data.prepared import open_prepared
    from gptbench.evaluation.loading import load_model_and_tokenizer
    from gptbench.evaluation.zeroshot import ZERO_SHOT_TASKS, evaluate_zero_shot, format_table
    from gptbench.io import atomic_write_json

    opts = _options("zeroshot", args.overrides, ZEROSHOT_KEYS)
    tasks = [t.strip() for t in opts.get("tasks", ",".join(ZERO_SHOT_TASKS)).strip("[]").split(",") if t.strip()]
    unknown = [t for t in tasks if t not in ZERO_SHOT_TASKS]
    if unknown:
        raise ConfigError(f"zeroshot: unknown task(s) {unknown}; known: {list(ZERO_SHOT_TASKS)}")
    try:
        max_examples = int(opts["max_examples"]) if opts.get("max_examples") else None
    except ValueError:
        raise ConfigError(f"zeroshot: max_examples must be an integer, got {opts['max_examples']!r}") from None
    data_dir = opts.get("data_dir") or os.environ.get("GPTBENCH_DATA")
    prepared = opts.get("prepared") or os.environ.get("GPTBENCH_PREPARED")
    if not prepared and (not data_dir or not Path(data_dir).is_dir()):
        raise ConfigError(f"zeroshot: data_dir={data_dir!r} is not a directory (set data_dir= or $GPTBENCH_DATA, "
                          "or prepared= / $GPTBENCH_PREPARED)")  # fmt: skip
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, opts.get("gpt1_dir"), opts.get("device"))
    prepared = open_prepared(prepared) if prepared else None
    results = evaluate_zero_shot(model, tokenizer, tasks, data_dir, max_examples, prepared)
    print(format_table(results))
    if opts.get("out"):
        atomic_write_json(opts["out"], {"checkpoint": str(args.checkpoint), "results": results})
        print(f"written {opts['out']}")


def _generate(args) -> None:
    """Continue a prompt with a checkpoint's language model and print the text."""
    import dataclasses

    from gptbench.evaluation.loading import load_model_and_tokenizer
    from gptbench.models.decoding import GenerationConfig

    opts = _options("generate", args.overrides, GENERATE_KEYS)
    loading = {k: opts.pop(k, None) for k in ("gpt1_dir", "device")}
    types = {f.name: f.type for f in dataclasses.fields(GenerationConfig)}
    options = {}
    for key, value in opts.items():
        kind = int if "int" in types[key] else float if "float" in types[key] else str
        try:
            options[key] = None if value.lower() == "none" and "None" in types[key] else kind(value)
        except ValueError:
            raise ConfigError(f"generate: {key} must be {kind.__name__}, got {value!r}") from None
    try:
        config = GenerationConfig(**options).validate()
    except ValueError as e:
        raise ConfigError(f"generate: {e}") from None
    if not args.prompt.strip():
        raise ConfigError("generate: the prompt is empty")
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, loading["gpt1_dir"], loading["device"])
    ids = tokenizer.encode(args.prompt)
    try:
        out = model.generate(ids, **dataclasses.asdict(config))
    except ValueError as e:  # a prompt longer than the context (context=stop); an encoder (NoNextTokenModel)
        raise ConfigError(f"generate: {e}") from None
    for i, row in enumerate(out.tolist()):
        if len(out) > 1:
            print(f"--- {i + 1} ---")
        print(f"{tokenizer.decode(row[: len(ids)])} >>> {tokenizer.decode(row[len(ids):])}")


def _fill_mask(args) -> None:
    """The BERT encoder's top-k tokens for each [MASK] of a text."""
    from gptbench.evaluation.fill_mask import fill_mask
    from gptbench.evaluation.loading import load_model_and_tokenizer

    opts = _options("fill-mask", args.overrides, FILL_MASK_KEYS)
    try:
        top_k = int(opts.get("top_k", 5))
    except ValueError:
        raise ConfigError(f"fill-mask: top_k must be an integer, got {opts['top_k']!r}") from None
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, device=opts.get("device"))
    try:
        masks = fill_mask(model, tokenizer, args.text, top_k)
    except ValueError as e:
        raise ConfigError(f"fill-mask: {e}") from None
    for i, candidates in enumerate(masks, 1):
        print(f"[MASK] {i}: " + "  ".join(f"{c.token.strip() or repr(c.token)} {c.probability:.3f}" for c in candidates))


def _epilog() -> str:
    from gptbench.config import experiment_files
    from gptbench.tasks import TASKS

    return f"""presets: {', '.join(experiment_files('preset'))} (experiments/<name>.yaml, or any YAML path)
sweeps:  {', '.join(experiment_files('table') + experiment_files('zero_shot_curve'))}
tasks:   {', '.join(sorted(TASKS))}

configuration: key=value overrides of the preset, e.g. model.n_layer=2, finetune.lr=1e-4,
  finetune.lm_coef=0, finetune.init=none, architecture=lstm, pretrain.max_steps=100, resume=true.
  Every key, its type and its default: gptbench/config.py (typed dataclasses); unknown keys and
  impossible values are refused before any work, naming the key.

environment: GPTBENCH_DATA (benchmark data root; unset = the Hugging Face hub),
  GPTBENCH_CORPUS (folder of .txt books), GPTBENCH_GPT1 (GPT-1's BPE files),
  GPTBENCH_CACHE (tokenized corpora and task splits; default ~/.cache/gptbench)

examples:
  gptbench reproduce --preset smoke                 pre-train, Tables 2-5, Figure 2, report
  gptbench pretrain smoke pretrain.max_steps=200    pre-train only
  gptbench finetune smoke task=rte finetune.seed=2  one fine-tune, after pre-training
  gptbench sweep table4_glue smoke seeds=[1,2,3]    a paper table, three seeds
  gptbench zeroshot runs/smoke/pretrain/model       the zero-shot heuristics of a checkpoint
  gptbench generate runs/smoke/pretrain/model "the old man" strategy=sample top_p=0.9 seed=1
  gptbench fill-mask runs/smoke/pretrain/bert-model "the cat [MASK] on the mat"   (architecture=bert)
  gptbench data rte                                 what data a task has here
  gptbench report results/smoke                     regenerate the leaderboard
"""


def _bench(args) -> None:
    import os

    from gptbench.suite.bench import run_bench

    if args.device == "cuda":  # the GPU figures need no data: random token ids of the paper's shapes
        from gptbench.suite.bench_gpu import run_gpu_bench

        run_gpu_bench(Path(args.out), reps=args.reps, steps=args.steps)
        return

    paths = {"--data-dir / GPTBENCH_DATA": args.data_dir or os.environ.get("GPTBENCH_DATA"),
             "--gpt1-dir / GPTBENCH_GPT1": args.gpt1_dir or os.environ.get("GPTBENCH_GPT1"),
             "--corpus-dir / GPTBENCH_CORPUS": args.corpus_dir or os.environ.get("GPTBENCH_CORPUS")}  # fmt: skip
    for key, path in paths.items():
        if not path or not Path(path).is_dir():
            raise ConfigError(f"bench: {key} must name a directory (RACE dev, GPT-1's BPE and book text are "
                              f"benchmarked), got {path!r}")  # fmt: skip
    data, gpt1, corpus = (Path(p) for p in paths.values())
    run_bench(Path(args.out), data, gpt1, corpus, reps=args.reps, steps=args.steps, race=args.race, texts=args.texts,
              sst2=args.sst2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptbench", description=__doc__.split("\n")[0], epilog=_epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_text in (
        ("pretrain", _pretrain, "pre-train a language model on the book corpus"),
        ("finetune", _finetune, "fine-tune on a task (task=NAME)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=_epilog(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.add_argument("config", help="YAML file or preset name (smoke, mini, paper)")
        p.add_argument("overrides", nargs="*", help="key=value overrides (see below)")
        p.set_defaults(fn=fn)
    p = sub.add_parser("data", help="print a task's splits: sizes and label distributions")
    p.add_argument("task")
    p.add_argument("--data-dir", help="benchmark data root (default: $GPTBENCH_DATA; unset = the hub)")
    p.set_defaults(fn=_data)
    p = sub.add_parser("reproduce", help="pre-train, run Tables 2-5 and Figure 2 and write the report under results/<preset>/")
    p.add_argument("--preset", default="smoke", help="smoke | mini | paper, or a YAML path (default: smoke)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, and the sweep keys seeds=, jobs=, executor=")
    p.set_defaults(fn=_reproduce)
    p = sub.add_parser("prepare", help="tokenize what a preset's runs read into out=DIR, for machines without "
                       "spaCy, the corpus or the benchmark data (then run with prepared=DIR)")  # fmt: skip
    p.add_argument("preset", help="smoke | mini | paper, or a YAML path")
    p.add_argument("overrides", nargs="*", help="out=DIR (required), tasks=[..] (default: every task of the preset's "
                   "reproduce), rows=drawn|all (default drawn: only the rows the runs draw; all: whole splits), "
                   "compress=true (zstd), and any key=value experiment override")  # fmt: skip
    p.set_defaults(fn=_prepare)
    p = sub.add_parser("sweep", help="run a paper table or figure (experiments/table*.yaml, figure2_*.yaml) on a preset")
    p.add_argument("table", help="table2_nli | table3_qa | table4_glue | table5_ablations | figure2_layers | "
                   "figure2_zeroshot, or a sweep YAML path")
    p.add_argument("preset", help="smoke | mini | paper, or a YAML path")
    p.add_argument("overrides", nargs="*", help="seeds=[..] tasks=[..] variants=[..] jobs=N executor=local|slurm|"
                   "submitit_local results_dir=PATH; local jobs on GPUs: gpus=[0,1,..] (default: every visible GPU, "
                   "job slot i on GPU i mod G) share_gpus=true (more jobs than GPUs); SLURM: cpus_per_task=N "
                   "slurm='{slurm_partition: gpu, mem_gb: 64}' (submitit parameters; GPUs and tasks follow "
                   "trainer.devices and trainer.num_nodes); zero-shot curves: tasks=, max_examples=N, results_dir=; "
                   "and any key=value experiment override")  # fmt: skip
    p.set_defaults(fn=_sweep)
    p = sub.add_parser("report", help="regenerate the leaderboard of a results directory (no training)")
    p.add_argument("results_dir", help="e.g. results/smoke")
    p.add_argument("--scales", nargs="+", default=[], metavar="DIR",
                   help="other results directories (the suite at other scales, e.g. results/gpu) to show beside "
                   "this one in the section Scales: every cell, the pre-training and the claims' verdicts")  # fmt: skip
    p.set_defaults(fn=_report)
    p = sub.add_parser("zeroshot", help="the paper's zero-shot heuristics (SST-2, CoLA, RACE, DPRD) on a checkpoint")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("overrides", nargs="*", help="tasks=sst2,cola,race,dprd max_examples=N data_dir=PATH gpt1_dir=PATH "
                   "out=PATH.json device=cpu|cuda prepared=DIR (default $GPTBENCH_PREPARED: the examples come "
                   "encoded from `gptbench prepare`'s directory)")  # fmt: skip
    p.set_defaults(fn=_zeroshot)
    p = sub.add_parser("generate", help="continue a prompt: greedy, beam search or sampling (top-k, top-p)")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("prompt", help="the text to continue")
    p.add_argument("overrides", nargs="*", help="max_new_tokens=50 strategy=greedy|beam|sample num_beams=4 "
                   "length_penalty=1 temperature=1 top_k=N top_p=P num_return_sequences=1 seed=N context=stop|slide "
                   "gpt1_dir=PATH device=cpu|cuda")  # fmt: skip
    p.set_defaults(fn=_generate)
    p = sub.add_parser("fill-mask", help="the BERT encoder's most likely tokens for each [MASK] of a text")
    p.add_argument("checkpoint", help="a BERT encoder: gptbench model dir or .ckpt (architecture=bert)")
    p.add_argument("text", help='e.g. "the cat [MASK] on the mat"')
    p.add_argument("overrides", nargs="*", help="top_k=5 device=cpu|cuda")
    p.set_defaults(fn=_fill_mask)
    p = sub.add_parser("bench", help="gptbench's speed beside its references (ratios, medians of interleaved runs)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions per figure (default 5)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per timed repetition (default 3)")
    p.add_argument("--race", type=int, default=200, help="RACE dev questions for zero-shot scoring (default 200)")
    p.add_argument("--texts", type=int, default=2000, help="texts for the tokenizer figure (default 2000)")
    p.add_argument("--sst2", type=int, default=4000, help="SST-2 training sentences per fine-tuning epoch timed "
                   "(default 4000; 67349 = the full epoch)")  # fmt: skip
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu: the CPU figures (default); cuda: "
                   "the GPU figures at the paper's shape, bf16 (bench_gpu.json)")  # fmt: skip
    p.add_argument("--out", default="results/bench", help="where bench.json is written (default results/bench)")
    p.add_argument("--data-dir", help="benchmark data root (default $GPTBENCH_DATA)")
    p.add_argument("--gpt1-dir", help="GPT-1's BPE files (default $GPTBENCH_GPT1)")
    p.add_argument("--corpus-dir", help="the books (default $GPTBENCH_CORPUS)")
    p.set_defaults(fn=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():  # logs of sweeps, SLURM, CI: no progress bars from datasets' encoding either
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        args.fn(args)
    except USER_ERRORS as e:
        hint = f" ({e.hint})" if getattr(e, "hint", None) else ""  # SplitUnavailable: what to do instead
        print(f"gptbench: error: {e}{hint}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
