"""The eval metric registry and the evaluation context every eval metric reads.

An eval metric is a function of one `EvalContext` → {key: value}, registered with the keys it logs (a function of
the run's shape, `KeySpace`) and what it needs (the model alone, the scored probe windows, or the SAEs too):

    @register("my_metric", keys=lambda space: [K.chrono(h, "my_metric") for h in space.hooks], needs="saes")
    def my_metric(ctx: EvalContext) -> dict[str, float]:
        return {K.chrono(h, "my_metric"): ... for h in ctx.saes.hook_points}

That is all: evaluation.evaluate runs every registered metric at every eval (and times it as
time/eval_<name>_s), plan.py's storage arithmetic counts its keys (eval_keys), and the wandb panels draw them
(panels.metric_figure). The arithmetic belongs in chrono/ as a pure function; the registration in the module that
gathers its inputs (probe_eval.py registers the probe-set families; evaluate.py runs them). Metrics run in
registration order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from chrono_membench import metric_keys as K

if TYPE_CHECKING:
    from chrono_membench.batches import SeenLog
    from chrono_membench.config import ChronoConfig
    from chrono_membench.distributed import Dist
    from chrono_membench.probes import Canaries, ProbeSet
    from chrono_membench.sae import SAEBank

Needs = Literal["model", "windows", "saes"]


@dataclass(frozen=True)
class KeySpace:
    """The shape of a run that decides which keys an eval logs once every probe column is filled."""
    hooks: list[str]  # SAE hook points ([] without SAEs)
    buckets: list[str]  # b0 … b{B-1} ([] without chrono)
    canary_labels: list[str]  # repetition counts + "control" ([] without canaries)
    sources: list[str]  # the mixture's sources with weight > 0
    reference: bool = True  # chrono.reference_loss: the step-0 model is kept
    crosscoder: bool = False  # crosscoder.enabled

    @property
    def columns(self) -> list[str]:
        return self.buckets + ["unseen"] if self.buckets else []

    @classmethod
    def of(cls, config: dict, hooks: list[str]) -> KeySpace:
        """A run's key space from its configuration (Config.to_dict(), or config.yaml as read) and SAE hook points."""
        chrono, sae = config["chrono"], config["sae"]
        on = chrono["enabled"]
        repetitions = chrono["canary_repetitions"] if on else []
        return cls(hooks=list(hooks) if sae["enabled"] else [],
                   buckets=[f"b{b}" for b in range(chrono["n_buckets"])] if on else [],
                   canary_labels=[str(r) for r in repetitions] + ["control"] if repetitions else [],
                   sources=[s for s, w in config["data"]["mixture"].items() if w > 0],
                   reference=chrono["reference_loss"],
                   crosscoder=bool(config.get("crosscoder", {}).get("enabled", False)) and bool(sae["enabled"]))


@dataclass
class EvalContext:
    """Everything an eval metric may read, built once per eval by the trainer."""
    model: Any  # the TransformerBridge being fine-tuned
    step: int
    chrono: ChronoConfig
    autocast: Any
    device: Any
    seed: int  # the eval's seed (permutation draws, bootstraps): run.seed and the step
    dist: Dist
    saes: SAEBank | None = None  # the live SAEs (None without any)
    reference: Any = None  # the frozen step-0 model, with chrono.reference_loss
    probes: ProbeSet | None = None
    seen: SeenLog | None = None
    canaries: Canaries | None = None
    val: dict | None = None  # the validation rows (tokens, source_index)
    eval_tokens: int = 0  # sae.eval_tokens: the SAE panel's validation tokens
    micro_batch: int = 1  # rows per forward
    final: bool = True  # the run's last eval (canaries score every candidate there)
    records: Any = None  # a latent_records.LatentRecords that folds in the probe windows' forward (one process)
    progress: bool = False  # a progress bar over the eval's parts
    full_lr: tuple[int, int] | None = None  # the first and last step trained at the full learning rate
    # the earlier evals' forgetting records [(step, record)] (chrono/forgetting.py), kept by the trainer across evals
    # and rebuilt from artifacts/step_N/probe_scores.json on resume; the forgetting metric appends this eval's
    history: list = field(default_factory=list)
    # filled during the eval: the scored probe windows and their SAE activations (probe_eval.windows_of), the
    # purity / selectivity matrices and density histograms that artifacts.py writes, and the eval's part timings
    cache: dict = field(default_factory=dict)
    matrices: dict = field(default_factory=dict)
    density: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        """Whether any update has happened (a new run's step-0 eval has nothing trained: no canaries, no decoding)."""
        return bool(self.seen is not None and self.seen.entries)


@dataclass(frozen=True)
class EvalMetric:
    name: str
    compute: Callable[[EvalContext], dict[str, float]]
    keys: Callable[[KeySpace], list[str]]  # every key it may log at an eval once the probe columns are filled
    needs: Needs = "model"  # model: always; windows: the probe set (chrono.enabled); saes: windows and live SAEs
    panel: bool = True  # drawn by panels.metric_figure (the built-in families have panels of their own)
    title: str = ""  # the panel's title: what the metric is, in words (default: its name)
    null: float | None = None  # what chance gives, drawn as a dashed line on the panel


REGISTRY: dict[str, EvalMetric] = {}


def register(name: str, keys: Callable[[KeySpace], list[str]], needs: Needs = "model", panel: bool = True,
             title: str = "", null: float | None = None):
    """Decorator: add `fn(ctx) → {key: value}` to the metrics every eval runs (title and null: its panel's)."""
    if not name.isidentifier():
        raise ValueError(f"eval metric name {name!r}: letters, digits and _ only (it names time/eval_<name>_s)")

    def add(fn: Callable[[EvalContext], dict[str, float]]):
        if name in REGISTRY and REGISTRY[name].compute is not fn:
            raise ValueError(f"eval metric {name!r} is already registered")
        REGISTRY[name] = EvalMetric(name, fn, keys, needs, panel, title, null)
        return fn
    return add


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def applies(metric: EvalMetric, ctx: EvalContext) -> bool:
    """Whether a metric can run in this eval (the probe set exists; with needs=saes, live SAEs too)."""
    if metric.needs == "model":
        return True
    return ctx.probes is not None and (metric.needs == "windows" or ctx.saes is not None)


def core_keys(space: KeySpace) -> list[str]:
    """The keys of the eval's core: validation loss and the SAE panel (evaluation.validation_metrics), and the
    timings of the probe windows' scoring."""
    keys = [K.val(n) for n in K.VAL] + ["time/eval_s"] + [K.sae(h, n) for h in space.hooks for n in K.SAE_EVAL]
    keys += [K.chrono(h, n) for h in space.hooks for n in K.STABILITY + K.PREVIOUS_SAE]
    # with SAEs the panel's clean forwards give its rows' validation loss; eval_val_s: the other rows' forwards
    keys += [K.eval_time("val")] + ([K.eval_time("sae_panel")] if space.hooks else [])
    if space.buckets:  # the probe windows' scoring, shared by the metrics that read them (probe_eval.windows_of)
        keys += [K.eval_time("extraction")] + ([K.eval_time("probe_forward")] if space.hooks else [])
        keys += [K.eval_time("reference")] if space.reference else []
    return keys


def eval_keys(space: KeySpace) -> list[str]:
    """Every key one eval logs once every probe column is filled: the core's and each registered metric's that
    applies to a run of this shape, with its time."""
    keys = core_keys(space)
    for metric in REGISTRY.values():
        if metric.needs == "model" or space.buckets and (metric.needs == "windows" or space.hooks):
            own = metric.keys(space)
            keys += own + ([K.eval_time(metric.name)] if own else [])
    return keys
