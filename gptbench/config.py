"""Experiment configuration: omegaconf YAML + ``key=value`` overrides -> typed dataclasses.

Everything is validated before any work starts; every error names the offending key.
Paths default to environment variables (GPTBENCH_DATA, GPTBENCH_CORPUS, GPTBENCH_GPT1,
GPTBENCH_CACHE) so the same YAML runs on any machine.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gptbench.models.gpt import GPTConfig
from gptbench.models import ARCHITECTURES as NETWORKS
from gptbench.models.bert import BertConfig
from gptbench.models.lstm import LSTMConfig

# The presets and sweep files ship inside the package (gptbench/experiments links to the checkout's
# experiments/, the one copy): a wheel installed anywhere finds them.
EXPERIMENTS_DIR = Path(str(importlib.resources.files("gptbench") / "experiments"))
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")  # Lightning's names; bf16-true is refused with its reason
MATMUL_PRECISIONS = ("highest", "high", "medium")
SELECTIONS = ("auto", "holdout", "dev", "last")
ARCHITECTURES = tuple(NETWORKS)  # transformer, lstm, bert


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


@dataclass
class TokenizerConfig:
    kind: str = "gpt1"  # gpt1: OpenAI's released 40k BPE | trained: learn a BPE on the corpus
    gpt1_dir: Optional[str] = "${oc.env:GPTBENCH_GPT1,null}"  # encoder_bpe_40000.json, vocab_40000.bpe
    vocab_size: int = 8000  # trained only: BPE vocabulary size
    train_bytes: int = 4_000_000  # trained only: about this many characters of training books


@dataclass
class CorpusConfig:
    path: Optional[str] = "${oc.env:GPTBENCH_CORPUS,null}"  # folder of .txt books (searched recursively)
    max_bytes: Optional[int] = None  # use training books (whole) until this many bytes; null = all
    val_books: int = 4  # whole books held out for validation


@dataclass
class LSTMSettings:
    """The LSTM of Table 5 (``architecture=lstm``). It shares the model section's n_ctx, n_embd
    (embedding width, and the width its output is projected to), embd_pdrop, resid_pdrop and
    initializer_range with the Transformer, and the tokenizer, corpus and pre-training settings."""

    n_hidden: int = 2048  # LSTM units (the paper: 2048); presets match the Transformer's parameters
    n_layer: int = 1  # the paper: a single layer


@dataclass
class PretrainConfig:
    max_steps: int = 100_000
    batch_size: int = 64  # sequences of n_ctx tokens per optimizer step (before accumulation)
    accumulate_grad_batches: int = 1
    lr: float = 2.5e-4
    warmup_steps: int = 2000  # linear warm-up from 0, then cosine to 0 at max_steps
    weight_decay: float = 0.01  # decoupled, on tensors of rank >= 2 only
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    val_every_n_steps: int = 1000
    val_windows: int = 256  # validation windows of n_ctx tokens from the held-out books
    checkpoint_every_n_steps: int = 1000
    log_every_n_steps: int = 50
    # Steps at which the model is exported for good to snapshots/step<N>/ (0 = before training),
    # e.g. log-spaced for zero-shot against updates (Figure 2, right). null: keep every periodic
    # checkpoint instead; a list: only the newest periodic checkpoint is kept (for resuming).
    keep_steps: Optional[list[int]] = None


@dataclass
class FinetuneConfig:
    task: str = "sst2"
    seed: Optional[int] = None  # fine-tuning seed (data order, dropout, head init); null = the experiment's seed
    init: str = "pretrained"  # pretrained: this experiment's pre-training | none: random | a path
    n_transfer: int = -1  # pre-trained blocks to keep (-1 = all); the others are re-initialised
    lm_coef: float = 0.5  # lambda in L3 = L2 + lambda * L1
    lr: float = 6.25e-5
    batch_size: int = 32
    epochs: int = 3
    warmup_fraction: float = 0.002  # linear warm-up over this fraction of updates, then linear decay
    clf_pdrop: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    # How the checkpoint that is reported gets chosen (recorded in results.json):
    #   holdout: best epoch on a fixed, seeded slice of the training split (holdout_fraction of
    #            it, at most holdout_max examples), never trained on; dev is scored once at the end
    #   dev:     best epoch on the evaluation split (the released code's protocol; honest only
    #            where a labelled test split is what gets reported)
    #   last:    the final epoch, no selection (the paper's fixed 3 epochs)
    #   auto:    dev where a labelled test split is present (SNLI, SciTail, RACE, Story Cloze),
    #            else holdout
    select: str = "auto"
    holdout_fraction: float = 0.1
    holdout_max: int = 2000
    max_train_examples: Optional[int] = None  # subsample the training split (smoke runs)
    max_eval_examples: Optional[int] = None  # a fixed random subset (the same for every seed)
    length_grouped: bool = False  # batch training examples of similar length together
    score_train: bool = False  # also score the examples trained on, with the reported checkpoint (Figure 2 left)
    # A linear probe: the network is frozen (and in eval mode: no dropout), only the task head
    # trains, through the same pipeline; needs lm_coef=0 (the LM loss would train nothing).
    freeze_body: bool = False
    data_dir: Optional[str] = "${oc.env:GPTBENCH_DATA,null}"  # root of the benchmark data
    # DataLoader workers (0: batches are built in the training process; on a small CPU machine
    # workers only compete with training for the cores); with workers, the batches each prepares
    # ahead and whether they outlive an epoch. None of them changes a number.
    num_workers: int = 0
    prefetch_factor: int = 2
    persistent_workers: bool = True
    val_checks_per_epoch: int = 1
    checkpoint_every_n_steps: Optional[int] = None  # besides every epoch end (long epochs: MNLI, QQP)
    # Split substitutions, recorded in results.json: split -> another split of the task or a file
    # in the split's format, e.g. {train: dev, dev: test} trains on SNLI dev, selects on test.
    splits: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    precision: str = "32-true"
    # fp32 matrix products on GPUs: "highest" (full fp32, exact and slow on Ampere or newer),
    # "high" (TF32 tensor cores, ~10 mantissa bits per product) or "medium" (bf16). torch's
    # set_float32_matmul_precision; used by 32-true and the fp32 parts of the mixed precisions.
    float32_matmul_precision: str = "highest"
    deterministic: bool = True
    # glibc keeps the memory a step frees for the next step instead of unmapping it (see
    # gptbench/training/allocator.py): less kernel time per step, the same numbers.
    keep_freed_memory: bool = True
    # Past one device: Lightning's strategies, e.g. devices=2 strategy=ddp (gloo on CPU, NCCL on
    # GPUs). Batch sizes are per device, so the global batch is batch_size x devices x num_nodes.
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    # Pre-training's forward and loss through torch.compile (inductor): on GPUs ~1.3x the eager step
    # at the paper's shape; it draws dropout masks from inductor's own random stream, so a compiled
    # run's numbers differ from an eager run's (both reproduce themselves, resumes included).
    compile: bool = False
    # The next-token loss (pre-training's, fine-tuning's auxiliary LM) computed this many positions at
    # a time, never the whole (positions x vocabulary) logits and their fp32 copy (0 = the plain
    # loss; e.g. 8192). For eager GPU runs: compiled ones do not materialise the fp32 copy anyway.
    # The same loss and gradients up to rounding (summation order); keyed when on.
    loss_chunk: int = 0


@dataclass
class ReproduceConfig:
    """What ``gptbench reproduce`` runs on this preset: the sweep files of experiments/ in order,
    and per sweep file the seeds, tasks and extra overrides that differ from the file's own (a
    quick preset runs smaller analysis sweeps). The command line's sweep keys and overrides win."""

    sweeps: list[str] = field(default_factory=lambda: ["table2_nli", "table3_qa", "table4_glue", "table5_ablations",
                                                       "figure2_layers", "figure2_zeroshot"])  # fmt: skip
    seeds: dict[str, list[int]] = field(default_factory=dict)
    tasks: dict[str, list[str]] = field(default_factory=dict)
    overrides: dict[str, list[str]] = field(default_factory=dict)
    # Seeds of particular tasks in every sweep that runs them (the small tasks' extra seeds);
    # the zero-shot curves have no seeds and ignore it.
    task_seeds: dict[str, list[int]] = field(default_factory=dict)
    # Overrides of particular tasks in every sweep that runs them (e.g. RACE's smaller subsets),
    # applied before each sweep's own overrides; the zero-shot curves ignore them.
    task_overrides: dict[str, list[str]] = field(default_factory=dict)
    # How the fine-tunes of every table share the machine (the sweep's jobs=, share_gpus=,
    # worker_runs=): runs at once, several on one GPU, and runs per worker process (1: a fresh
    # process each; more: the CUDA context and compiled graphs are made once per worker).
    jobs: int = 1
    share_gpus: bool = False
    worker_runs: int = 1

    def arguments(self, sweep: str) -> list[str]:
        """The ``key=value`` arguments of one sweep: its seeds=, task_seeds=, task_overrides=, tasks=,
        the sharing of the machine (tables only; the zero-shot curves run in the sweep's process)
        and overrides."""
        args = [f"seeds=[{','.join(map(str, self.seeds[sweep]))}]"] if sweep in self.seeds else []
        if self.task_seeds:
            args.append("task_seeds={" + ", ".join(f"{t}: [{', '.join(map(str, s))}]" for t, s in self.task_seeds.items())
                        + "}")  # fmt: skip
        if self.task_overrides:
            args.append("task_overrides={" + ", ".join(f"{t}: [{', '.join(o)}]" for t, o in self.task_overrides.items())
                        + "}")  # fmt: skip
        args += [f"tasks=[{','.join(self.tasks[sweep])}]"] if sweep in self.tasks else []
        if sweep not in experiment_files("zero_shot_curve"):
            sharing = {"jobs": (self.jobs, 1), "share_gpus": (self.share_gpus, False), "worker_runs": (self.worker_runs, 1)}
            args += [f"{key}={str(value).lower()}" for key, (value, default) in sharing.items() if value != default]
        return args + list(self.overrides.get(sweep, []))


@dataclass
class ExperimentConfig:
    name: str = "default"
    seed: int = 1234
    runs_dir: str = "runs"
    cache_dir: str = "${oc.env:GPTBENCH_CACHE,${oc.env:HOME,.}/.cache/gptbench}"
    resume: bool = False  # continue from the run directory's last checkpoint
    # transformer: GPT-1 (the model section) | lstm: Table 5's LSTM | bert: a BERT-style encoder of the
    # model section's shape, pre-trained on masked tokens (gptbench.training.masked_lm)
    architecture: str = "transformer"
    model: GPTConfig = field(default_factory=GPTConfig)
    lstm: LSTMSettings = field(default_factory=LSTMSettings)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    reproduce: ReproduceConfig = field(default_factory=ReproduceConfig)
    # A directory made by `gptbench prepare`: pre-training and fine-tuning read only from it (no
    # tokenizer pipeline, corpus or benchmark data needed); gptbench.data.prepared
    prepared: Optional[str] = "${oc.env:GPTBENCH_PREPARED,null}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def finetune_seed(self) -> int:
        return self.seed if self.finetune.seed is None else self.finetune.seed

    def network_config(self, vocab_size: int, n_special: int) -> GPTConfig | LSTMConfig | BertConfig:
        """The config of a fresh network of ``architecture`` for a tokenizer's vocabulary."""
        vocab = {"vocab_size": vocab_size, "n_special": n_special}
        m = self.model
        if self.architecture == "transformer":
            return GPTConfig(**{**asdict(m), **vocab})
        if self.architecture == "bert":  # the tokenizer's task tokens, then [MASK]
            return BertConfig(vocab_size=vocab_size, n_special=n_special + 1, n_ctx=m.n_ctx, n_embd=m.n_embd,
                              n_layer=m.n_layer, n_head=m.n_head, embd_pdrop=m.embd_pdrop, attn_pdrop=m.attn_pdrop,
                              resid_pdrop=m.resid_pdrop, initializer_range=m.initializer_range,
                              pad_vocab_multiple=m.pad_vocab_multiple)  # fmt: skip
        return LSTMConfig(**vocab, n_ctx=m.n_ctx, n_embd=m.n_embd, n_hidden=self.lstm.n_hidden,
                          n_layer=self.lstm.n_layer, embd_pdrop=m.embd_pdrop, resid_pdrop=m.resid_pdrop,
                          initializer_range=m.initializer_range, pad_vocab_multiple=m.pad_vocab_multiple)  # fmt: skip

    def dropout(self) -> dict[str, float]:
        """The model section's dropout rates (each network takes those it has)."""
        return {k: getattr(self.model, k) for k in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}


# Keys derived from other parts of the experiment, never set by hand.
_DERIVED = {"model.vocab_size": "it is taken from the tokenizer",
            "model.n_special": "GPT-1 always adds 3 special tokens"}  # fmt: skip


def resolve_config_path(config: str | Path) -> Path:
    """A YAML path, or the name of a preset in experiments/ (``smoke`` -> experiments/smoke.yaml)."""
    path = Path(config)
    if path.is_file():
        return path
    preset = EXPERIMENTS_DIR / f"{config}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"config {str(config)!r}: no such file and no preset of that name (presets: {experiment_files('preset')})")


def experiment_files(kind: str) -> list[str]:
    """Names of the files in experiments/ of one kind: 'preset', 'table' (a sweep of fine-tunes)
    or 'zero_shot_curve' (zero-shot scores of pre-training snapshots)."""
    return sorted(name for name, k in _experiment_kinds().items() if k == kind)


@functools.lru_cache(maxsize=1)
def _experiment_kinds() -> dict[str, str]:
    return {p.stem: OmegaConf.load(p).get("kind") or "preset" for p in EXPERIMENTS_DIR.glob("*.yaml")}


def load_config(config: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Merge YAML (following its ``base:`` chain) and ``key=value`` overrides onto the schema."""
    try:
        layers = _yaml_layers(resolve_config_path(config))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        for layer in layers:
            for key, why in _DERIVED.items():
                if OmegaConf.select(layer, key) is not None:
                    raise ConfigError(f"{key} cannot be set: {why}")
        merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), *layers)
        cfg: ExperimentConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).split("\n")[0]
        raise ConfigError(f"config key {key!r}: {msg}" if key else msg) from None
    except ValueError as e:  # GPTConfig.validate and friends
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None
    validate(cfg)
    return cfg


def _yaml_layers(path: Path, chain: tuple[Path, ...] = ()) -> list:
    """The YAML file and, first, the files named by its ``base:`` key (relative to it)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError("config base: chain loops: " + " -> ".join(str(p) for p in (*chain, path)))
    if not path.is_file():
        where = f" (the base: of {chain[-1]})" if chain else ""
        raise ConfigError(f"config {path}{where}: no such file")
    try:
        node = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not readable as a YAML text file ({e})") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a YAML mapping of config keys, got a {type(node).__name__}")
    if (node.get("kind") or "preset") != "preset":
        raise ConfigError(f"{path} is a sweep file, not a preset: run `gptbench sweep {path.stem} PRESET`")
    base = node.pop("base", None)
    return (_yaml_layers(path.parent / base, (*chain, path)) if base else []) + [node]


def non_finite(node, prefix: str = "") -> tuple[str, float] | None:
    """The first float of a config (nested dataclasses, lists, dicts) that is nan or infinite."""
    if is_dataclass(node):
        items = ((f.name, getattr(node, f.name)) for f in fields(node))
    elif isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return (prefix, node) if isinstance(node, float) and not math.isfinite(node) else None
    for name, value in items:
        found = non_finite(value, f"{prefix}.{name}" if prefix else str(name))
        if found:
            return found
    return None


def validate(cfg: ExperimentConfig) -> None:
    """Checks that need no filesystem access; stage-specific checks are in ``require_*``."""

    def check(ok: bool, key: str, expected: str, value) -> None:
        if not ok:
            raise ConfigError(f"{key}={value!r}: expected {expected}")

    bad = non_finite(cfg)
    if bad:
        raise ConfigError(f"{bad[0]}={bad[1]!r}: expected a finite number")

    check(cfg.tokenizer.kind in ("gpt1", "trained"), "tokenizer.kind", "'gpt1' or 'trained'", cfg.tokenizer.kind)
    check(cfg.tokenizer.vocab_size >= 256, "tokenizer.vocab_size", ">= 256", cfg.tokenizer.vocab_size)
    check(cfg.tokenizer.train_bytes > 0, "tokenizer.train_bytes", "> 0", cfg.tokenizer.train_bytes)
    check(cfg.corpus.val_books >= 1, "corpus.val_books", ">= 1", cfg.corpus.val_books)
    check(cfg.corpus.max_bytes is None or cfg.corpus.max_bytes > 0, "corpus.max_bytes", "> 0 or null", cfg.corpus.max_bytes)
    p = cfg.pretrain
    for key in ("max_steps", "batch_size", "accumulate_grad_batches", "val_every_n_steps",
                "val_windows", "checkpoint_every_n_steps", "log_every_n_steps"):  # fmt: skip
        check(getattr(p, key) > 0, f"pretrain.{key}", "> 0", getattr(p, key))
    check(0 <= p.warmup_steps <= p.max_steps, "pretrain.warmup_steps", f"in [0, max_steps={p.max_steps}]", p.warmup_steps)
    check(p.keep_steps is None or all(0 <= s <= p.max_steps for s in p.keep_steps), "pretrain.keep_steps",
          f"null or steps in [0, max_steps={p.max_steps}]", p.keep_steps)  # fmt: skip
    check(cfg.architecture in ARCHITECTURES, "architecture", f"one of {ARCHITECTURES}", cfg.architecture)
    if cfg.architecture == "lstm":
        check(cfg.lstm.n_layer >= 1, "lstm.n_layer", ">= 1", cfg.lstm.n_layer)
        check(cfg.lstm.n_hidden > cfg.model.n_embd, "lstm.n_hidden", f"> model.n_embd={cfg.model.n_embd} (its output "
              "is projected to the embedding width)", cfg.lstm.n_hidden)  # fmt: skip
    f = cfg.finetune
    for key in ("batch_size", "epochs", "val_checks_per_epoch"):
        check(getattr(f, key) > 0, f"finetune.{key}", "> 0", getattr(f, key))
    for key in ("max_train_examples", "max_eval_examples", "checkpoint_every_n_steps"):
        check(getattr(f, key) is None or getattr(f, key) > 0, f"finetune.{key}", "> 0 or null", getattr(f, key))
    check(f.num_workers >= 0, "finetune.num_workers", ">= 0", f.num_workers)
    check(f.prefetch_factor >= 1, "finetune.prefetch_factor", ">= 1", f.prefetch_factor)
    check(f.select in SELECTIONS, "finetune.select", f"one of {SELECTIONS}", f.select)
    check(0 < f.holdout_fraction < 1, "finetune.holdout_fraction", "in (0, 1)", f.holdout_fraction)
    check(f.holdout_max > 0, "finetune.holdout_max", "> 0", f.holdout_max)
    n_layer = cfg.lstm.n_layer if cfg.architecture == "lstm" else cfg.model.n_layer
    check(-1 <= f.n_transfer <= n_layer, "finetune.n_transfer", f"-1 (all) or 0..{n_layer}", f.n_transfer)
    check(f.lm_coef >= 0, "finetune.lm_coef", ">= 0", f.lm_coef)
    check(not (f.freeze_body and f.lm_coef > 0), "finetune.lm_coef", "0 with finetune.freeze_body=true (a frozen "
          "network has nothing for the auxiliary LM loss to train)", f.lm_coef)  # fmt: skip
    check(0 <= f.warmup_fraction < 1, "finetune.warmup_fraction", "in [0, 1)", f.warmup_fraction)
    check(0 <= f.clf_pdrop < 1, "finetune.clf_pdrop", "in [0, 1)", f.clf_pdrop)
    for section, key in (("pretrain", "lr"), ("finetune", "lr"), ("pretrain", "eps"), ("finetune", "eps")):
        value = getattr(getattr(cfg, section), key)
        check(value > 0, f"{section}.{key}", "> 0", value)
    for section in ("pretrain", "finetune"):
        s = getattr(cfg, section)
        check(s.weight_decay >= 0, f"{section}.weight_decay", ">= 0", s.weight_decay)
        check(s.grad_clip >= 0, f"{section}.grad_clip", ">= 0 (0 disables clipping)", s.grad_clip)
        check(all(0 <= b < 1 for b in s.betas), f"{section}.betas", "two values in [0, 1)", s.betas)
    check(cfg.trainer.precision != "bf16-true", "trainer.precision",
          "not bf16-true: it keeps the weights and Adam's moments in bf16 with no fp32 master copy, so an "
          "update smaller than 1/256 of a weight is lost; use bf16-mixed (bf16 compute, fp32 weights)",
          cfg.trainer.precision)  # fmt: skip
    check(cfg.trainer.precision in PRECISIONS, "trainer.precision", f"one of {PRECISIONS}", cfg.trainer.precision)
    check(cfg.trainer.float32_matmul_precision in MATMUL_PRECISIONS, "trainer.float32_matmul_precision",
          f"one of {MATMUL_PRECISIONS}", cfg.trainer.float32_matmul_precision)  # fmt: skip
    check(cfg.trainer.loss_chunk >= 0, "trainer.loss_chunk", ">= 0 (0 = the plain loss)", cfg.trainer.loss_chunk)
    check(cfg.trainer.devices >= 1, "trainer.devices", ">= 1", cfg.trainer.devices)
    check(cfg.trainer.num_nodes >= 1, "trainer.num_nodes", ">= 1", cfg.trainer.num_nodes)
    check(bool(cfg.name) and "/" not in cfg.name, "name", "a non-empty name without '/'", cfg.name)
    sweeps = experiment_files("table") + experiment_files("zero_shot_curve")
    r = cfg.reproduce
    for key, names in (("sweeps", r.sweeps), ("seeds", list(r.seeds)), ("tasks", list(r.tasks)),
                       ("overrides", list(r.overrides))):  # fmt: skip
        unknown = sorted(set(names) - set(sweeps))
        check(not unknown, f"reproduce.{key}", f"sweep files of experiments/ ({sweeps})", unknown or names)
    check(r.jobs >= 1, "reproduce.jobs", ">= 1", r.jobs)
    check(r.worker_runs >= 1, "reproduce.worker_runs", ">= 1", r.worker_runs)
    if f.init not in ("pretrained", "none") and not Path(f.init).exists():
        raise ConfigError(f"finetune.init={f.init!r}: expected 'pretrained', 'none' or an existing checkpoint path")
    from gptbench.tasks import TASKS

    check(f.task in TASKS, "finetune.task", f"one of {sorted(TASKS)}", f.task)


def require_dir(value: Optional[str], key: str, env: str, what: str) -> Path:
    """The directory a key points at, or a ConfigError saying how to set it."""
    if not value:
        raise ConfigError(f"{key} is not set: set {key}=PATH or the environment variable {env} ({what})")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key}={value!r}: directory does not exist ({what})")
    return path


def to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
