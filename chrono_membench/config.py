"""One configuration object: nested dataclasses, loaded from a YAML preset, overridden by `key=value`.

Everything is validated here, before a model or a dataset is touched: a bad field raises ConfigError with
one line naming the field and what is allowed (experiments/run.py turns it into exit code 2).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"
SOURCES = ("fineweb_edu", "wikitext103", "orca_math", "bookcorpus")
DATA_ORIGINS = ("sample", "local", "hub")
OPTIMIZERS = ("adamw", "muon")
PARALLEL_MODES = ("ddp", "fsdp")  # under torchrun (WORLD_SIZE > 1); one process ignores it
WANDB_MODES = ("offline", "online", "disabled")
SAE_ARCHITECTURES = ("topk", "standard", "jumprelu", "batchtopk")

# Each ablation sets exactly these switches (DESIGN.md §4.1–4.3); `full` keeps the preset's values.
ABLATIONS: dict[str, dict[str, float]] = {
    "full": {},
    "no_dropout": {"chrono.dropout_p_max": 0.0},
    "no_alignment": {"chrono.alignment_weight": 0.0},
    "no_diversity": {"chrono.diversity_weight": 0.0},
    "baseline": {"chrono.dropout_p_max": 0.0, "chrono.alignment_weight": 0.0, "chrono.diversity_weight": 0.0},
}


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the field and what is allowed."""


@dataclass
class RunConfig:
    name: str = ""  # empty: "<preset>-<ablation>-<timestamp>"
    preset: str = ""
    ablation: str = "full"
    seed: int = 0
    out_dir: str = "runs"
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class DataConfig:
    origin: str = "sample"  # sample: bundled data/sample; local: local_dir; hub: stream from the hub
    local_dir: str = ""
    mixture: dict[str, float] = field(
        default_factory=lambda: {"fineweb_edu": 0.4, "wikitext103": 0.3, "orca_math": 0.2, "bookcorpus": 0.1}
    )
    seq_len: int = 1024
    val_percent: int = 15  # hash(source, key) mod 100 < val_percent → validation
    val_rows: int = 8  # rows of packed validation documents used for val loss
    shuffle_buffer: int = 1000  # documents; each source is reshuffled every epoch
    sentences_per_passage: int = 40  # bookcorpus: consecutive sentences grouped into one passage
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "gguf:smollm2-135m"  # hf:<id> | gguf:<name or file> | local:<dir> | tiny
    dtype: str = "float32"
    # Only for name=tiny: a randomly initialised Llama-architecture model with the SmolLM2 tokenizer.
    tiny_layers: int = 2
    tiny_d_model: int = 64
    tiny_heads: int = 4


@dataclass
class TrainConfig:
    micro_batch: int = 2
    grad_accum: int = 16
    max_steps: int = 5000
    optimizer: str = "adamw"
    lr: float = 3e-5  # AdamW LR (embeddings, unembedding, norms under Muon)
    muon_lr: float = 0.02  # Muon LR for 2-D hidden matrices
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    warmup_frac: float = 0.05
    warmdown_frac: float = 0.2
    final_lr_frac: float = 0.0
    eval_every: int = 250
    log_every: int = 50
    chrono_every: int = 100
    max_skipped_in_a_row: int = 5
    parallel: str = "ddp"  # under torchrun: ddp, or fsdp (FSDP2 fully_shard per block: models too big to replicate)
    compile: bool = False  # torch.compile the HF model (CUDA only; see README "Scaling" for what it breaks)
    peak_tflops: float = 0.0  # accelerator peak bf16 TFLOP/s for train/mfu; 0 = look the GPU up (none on CPU)


@dataclass
class SAEConfig:
    enabled: bool = True
    hook_points: list[str] = field(default_factory=list)  # empty: one mid-depth blocks.{L//2}.hook_resid_post
    architecture: str = "topk"
    expansion: int = 8
    k: int = 32
    l1_coefficient: float = 5.0
    lr: float = 3e-4  # sae-lens's default; short runs (demo, tiny) need more
    dead_window: int = 100_000  # tokens without firing before a latent counts as dead


@dataclass
class ChronoConfig:
    dropout_p_max: float = 0.1
    alignment_weight: float = 0.1
    diversity_weight: float = 0.01
    n_buckets: int = 10
    probe_per_bucket: int = 32
    probe_queries: int = 32  # query positions per micro-batch the diversity regulariser looks at
    canary_repetitions: list[int] = field(default_factory=list)  # e.g. [1, 8]: one canary per entry
    canary_length: int = 12  # random tokens per secret
    canary_candidates: int = 127  # random reference secrets the true one is ranked against
    canary_until: float = 0.5  # insertions are spread over the first this fraction of training
    enabled: bool = True  # attention diversity, probe set, purity, memorisation probes


@dataclass
class LoggingConfig:
    wandb_mode: str = "offline"  # the WANDB_MODE environment variable wins
    project: str = "chrono-membench"
    group: str = ""  # empty: the preset name


@dataclass
class CheckpointingConfig:
    checkpoint_every_n_steps: int = 500
    keep_last: int = 3
    save_features: bool = True
    save_sae_state: bool = True


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    chrono: ChronoConfig = field(default_factory=ChronoConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- building from dicts


def _check_type(value, tp, key: str):
    """Return value converted to tp (int → float allowed), or raise ConfigError naming key."""
    origin = typing.get_origin(tp)
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
    parsed = [parse_override(o) for o in overrides]
    ablation = ablation or dict(parsed).get("run.ablation") or tree.get("run", {}).get("ablation", "full")
    if ablation not in ABLATIONS:
        raise ConfigError(f"unknown ablation {ablation!r}; allowed: {', '.join(ABLATIONS)}")
    _set_dotted(tree, "run.ablation", ablation)
    for key, value in list(ABLATIONS[ablation].items()) + parsed:
        _set_dotted(tree, key, value)
    cfg = _build(Config, tree, "")
    validate(cfg)
    return cfg


def config_from_dict(tree: dict) -> Config:
    """Rebuild a Config saved as config.yaml (used by resume)."""
    cfg = _build(Config, tree, "")
    validate(cfg)
    return cfg


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def validate(cfg: Config) -> None:
    for key in ("data.seq_len", "data.val_rows", "data.shuffle_buffer", "data.sentences_per_passage",
                "train.micro_batch", "train.grad_accum", "train.max_steps", "train.eval_every",
                "train.log_every", "train.chrono_every", "train.max_skipped_in_a_row",
                "checkpointing.checkpoint_every_n_steps", "checkpointing.keep_last",
                "model.tiny_layers", "model.tiny_d_model", "model.tiny_heads",
                "sae.expansion", "sae.k", "sae.dead_window", "chrono.n_buckets", "chrono.probe_per_bucket",
                "chrono.probe_queries", "chrono.canary_length", "chrono.canary_candidates"):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value}")
    mixture = cfg.data.mixture
    for source, weight in mixture.items():
        _one_of(f"data.mixture source {source!r}", source, SOURCES)
        if weight < 0:
            raise ConfigError(f"data.mixture.{source} must be >= 0, got {weight}")
    if abs(sum(mixture.values()) - 1.0) > 1e-6:
        raise ConfigError(f"data.mixture weights must sum to 1, got {sum(mixture.values()):.6g} ({mixture})")
    if not 0 <= cfg.data.val_percent < 100:
        raise ConfigError(f"data.val_percent must be in [0, 100), got {cfg.data.val_percent}")
    _one_of("data.origin", cfg.data.origin, DATA_ORIGINS)
    if cfg.data.origin == "local" and not cfg.data.local_dir:
        raise ConfigError("data.local_dir must name a directory of <source>.parquet/.jsonl files when data.origin=local")
    _one_of("train.optimizer", cfg.train.optimizer, OPTIMIZERS)
    _one_of("train.parallel", cfg.train.parallel, PARALLEL_MODES)
    if cfg.train.parallel == "fsdp" and cfg.train.optimizer == "muon":
        raise ConfigError("train.optimizer=muon does not support sharded (FSDP) parameters; use train.parallel=ddp "
                          "or train.optimizer=adamw")
    if cfg.train.peak_tflops < 0:
        raise ConfigError(f"train.peak_tflops must be >= 0, got {cfg.train.peak_tflops}")
    _one_of("logging.wandb_mode", cfg.logging.wandb_mode, WANDB_MODES)
    _one_of("sae.architecture", cfg.sae.architecture, SAE_ARCHITECTURES)
    _one_of("run.ablation", cfg.run.ablation, tuple(ABLATIONS))
    if not (cfg.model.name == "tiny" or cfg.model.name.split(":", 1)[0] in ("hf", "gguf", "local")):
        raise ConfigError(
            f"model.name must be tiny, hf:<hub id>, gguf:<name or file> or local:<dir>; got {cfg.model.name!r}"
        )
    _one_of("model.dtype", cfg.model.dtype, ("float32", "bfloat16", "float16"))
    for key in ("train.lr", "train.muon_lr", "sae.lr"):
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) <= 0:
            raise ConfigError(f"{key} must be > 0, got {getattr(getattr(cfg, section), name)}")
    if any(r < 1 for r in cfg.chrono.canary_repetitions):
        raise ConfigError(f"chrono.canary_repetitions must be positive integers, got {cfg.chrono.canary_repetitions}")
    for key in ("train.warmup_frac", "train.warmdown_frac", "train.final_lr_frac", "chrono.dropout_p_max",
                "chrono.canary_until"):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not 0 <= value <= 1:
            raise ConfigError(f"{key} must be in [0, 1], got {value}")
    if cfg.train.warmup_frac + cfg.train.warmdown_frac > 1:
        raise ConfigError("train.warmup_frac + train.warmdown_frac must be <= 1")
    if len(cfg.train.betas) != 2:
        raise ConfigError(f"train.betas must be two numbers, got {cfg.train.betas}")
    if cfg.run.device != "auto" and cfg.run.device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"run.device must be auto, cpu, cuda or cuda:N; got {cfg.run.device!r}")


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

