"""Planning arithmetic (docs/design.md §6): tokens, epochs, Chinchilla, time budgets, storage.

Each formula is a small function, tested on hand-made inputs (the worked examples of docs/design.md §6 included). The
measured inputs (documents, bytes and tokens per source; tokens/s; artifact shapes) come from the data, the
tokenizer, the model's config and `experiments/tune.py`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from chrono_membench import evaluation  # noqa: F401  (its import registers every built-in eval metric)
from chrono_membench import metric_keys as K
from chrono_membench.config import Config
from chrono_membench.probes import PROBE_TOKENS, SCORED_TOKENS  # a window, and what greedy decoding extends it by
from chrono_membench.registry import KeySpace, eval_keys

GB = 1e9
WANDB_FREE_TIER_GB = 100.0
SCALAR_BYTES = 24  # one logged scalar in wandb's history, roughly (key index + float + framing)

# Architectures of the hub presets, so the plan works offline (the values of their config.json on the hub).
KNOWN_HUB_CONFIGS = {
    "google/gemma-2-2b": ("Gemma2Config", dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                                               num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                               head_dim=256)),
    "meta-llama/Meta-Llama-3-8B": ("LlamaConfig", dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                                       num_hidden_layers=32, num_attention_heads=32,
                                                       num_key_value_heads=8, tie_word_embeddings=False)),
}


def tokens_consumed(max_steps: int, micro_batch: int, grad_accum: int, seq_len: int, world_size: int = 1) -> int:
    return max_steps * micro_batch * grad_accum * seq_len * world_size


def chinchilla_tokens(n_params: int) -> int:
    """Compute-optimal training tokens, ≈ 20 per parameter (Hoffmann et al. 2022)."""
    return 20 * n_params


def steps_for_tokens(tokens: float, tokens_per_step: int) -> int:
    return math.ceil(tokens / tokens_per_step)


def warmup_seconds(warmup_tokens: int, tokens_per_s: float, stop_layer: int, n_layers: int) -> float:
    """sae.warmup_tokens' time: forwards only (≈ 1/3 of a training step's FLOPs per token: 2N of 6N), through
    stop_layer of n_layers blocks, at the training throughput tokens_per_s. The SAE steps are left out (at the
    hub presets' widths ≈ 1 % of the LM step's FLOPs: RESULTS.md's FLOP floor)."""
    return warmup_tokens * (stop_layer / n_layers) / (3 * tokens_per_s)


def entries_for_time_budget(entries_per_gb: float, tokens_per_gb: float, tokens_per_s: float, seconds: float) -> float:
    """Seed 002: entries/GB × GB/token × tokens/s × time — how many documents a run of that length reads."""
    return entries_per_gb * (1.0 / tokens_per_gb) * tokens_per_s * seconds


@dataclass
class SourceMeasure:
    entries: int  # documents available (the local/sample files, or the seed's count for the hub)
    bytes: int  # UTF-8 bytes of all those documents (extrapolated from the measured ones if not all read)
    tokens: int  # tokens with the model's tokenizer (extrapolated the same way)
    measured_entries: int  # how many documents were actually read and tokenised
    extrapolated: bool

    @property
    def entries_per_gb(self) -> float:
        return self.entries / (self.bytes / GB)

    @property
    def tokens_per_gb(self) -> float:
        return self.tokens / (self.bytes / GB)


def measure_documents(texts, tokenizer, total_entries: int | None = None) -> SourceMeasure:
    """Bytes and tokens of the given documents; scaled to total_entries (labelled extrapolated) if larger."""
    n = n_bytes = n_tokens = 0
    for text in texts:
        n += 1
        n_bytes += len(text.encode())
        n_tokens += len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + EOS, as packed
    total = max(total_entries or n, n)
    scale = total / max(n, 1)
    return SourceMeasure(total, round(n_bytes * scale), round(n_tokens * scale), n, total > n)


def epochs_per_source(tokens_total: int, mixture: dict[str, float], source_tokens: dict[str, int]) -> dict[str, float]:
    """Passes over each source the run makes, drawing documents by weight (token shares ≈ weights)."""
    return {s: tokens_total * w / source_tokens[s] for s, w in mixture.items() if w > 0 and source_tokens.get(s)}


def storage_plan(cfg: Config, d_model: int, n_layers: int, n_hooks: int) -> dict[str, dict]:
    """wandb storage per run, from the artifact shapes and cadence the config asks for (bytes)."""
    t, d_sae = cfg.train, cfg.sae.expansion * d_model
    every = cfg.checkpointing.checkpoint_every_n_steps
    # the last step is always checkpointed; with the SAE warm-up, step 0 as well
    n_ckpt = t.max_steps // every + (t.max_steps % every > 0) + (cfg.sae.warmup_tokens > 0)
    n_eval = t.max_steps // t.eval_every + 1 + (t.max_steps % t.eval_every > 0)
    items = {}
    if cfg.sae.enabled and cfg.checkpointing.save_features:
        # fp16 unit decoder rows + firing frequency + mean activation
        items["features"] = (n_ckpt * n_hooks, (d_sae * d_model + 2 * d_sae) * 2)
    if cfg.sae.enabled and cfg.checkpointing.save_sae_state:
        # fp32 W_enc, W_dec, b_enc, b_dec (sae-lens format)
        items["sae_state"] = (n_ckpt * n_hooks, (2 * d_sae * d_model + d_sae + d_model) * 4)
    if cfg.sae.enabled and cfg.chrono.enabled:
        # fp16 temporal [d_sae, ≤ B+1] and source [d_sae, ≤ 4]
        items["purity"] = (n_eval * n_hooks, d_sae * (cfg.chrono.n_buckets + 1 + 4) * 2)
        # latent records per checkpoint (latent_records.py): top-10 value/window/position/32 per-token values,
        # histogram, density, bucket and source profiles, 2 × 10 logit ids and values
        items["latent_records"] = (n_ckpt * n_hooks, d_sae * (10 * (2 + 4 + 2 + 32 * 2) + 27 * 4 + 4
                                                              + (cfg.chrono.n_buckets + 1 + 4) * 2 + 20 * (4 + 2)))
    if cfg.crosscoder.enabled and cfg.checkpointing.save_sae_state:
        # fp32, the crosscoder and its null twin: W_enc, W_dec [2, d, F], b_enc [F], b_dec [2, d] each
        c_sae = cfg.crosscoder.expansion * d_model
        items["crosscoder"] = (n_ckpt, 2 * (4 * c_sae * d_model + c_sae + 2 * d_model) * 4)
    # Scalars: the very keys a run logs (metric_keys), counted per cadence. Hook names only matter for counting.
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(n_hooks)] if cfg.sae.enabled else []
    per_chrono = len(K.chrono_step_keys(hooks, n_layers, cfg.chrono.diversity)) if cfg.chrono.enabled else 0
    per_chrono += len(K.crosscoder_step_keys(cfg.crosscoder.enabled))
    per_eval = len(eval_keys(KeySpace.of(cfg.to_dict(), hooks)))
    n_scalars = (t.max_steps // t.log_every) * len(K.TRAIN) + (t.max_steps // t.chrono_every) * per_chrono \
        + n_eval * per_eval
    if cfg.sae.enabled and cfg.sae.variants:  # each variant: its SAEs' files and per-hook keys once more
        sae_keys = K.SAE_STEP + K.SAE_HEALTH + K.CHRONO_STEP
        chrono_keys = K.PURITY + K.SELECTIVE + (K.MEM_LATENTS if cfg.chrono.reference_loss else ())
        per_eval_keys = K.SAE_EVAL + K.STABILITY + (chrono_keys if cfg.chrono.enabled else ())
        for name in cfg.sae.variants:
            v_sae = cfg.variant(name)[0]
            v_d_sae = v_sae.expansion * d_model
            if cfg.checkpointing.save_features:
                items[f"features_{name}"] = (n_ckpt * n_hooks, (v_d_sae * d_model + 2 * v_d_sae) * 2)
            if cfg.checkpointing.save_sae_state:
                items[f"sae_state_{name}"] = (n_ckpt * n_hooks, (2 * v_d_sae * d_model + v_d_sae + d_model) * 4)
            n_scalars += (t.max_steps // t.chrono_every) * (n_hooks * len(sae_keys) + 1) * cfg.chrono.enabled \
                + n_eval * n_hooks * len(per_eval_keys)
    items["scalars"] = (n_scalars, SCALAR_BYTES)
    return {name: {"count": count, "bytes_each": each, "bytes": count * each} for name, (count, each) in items.items()}


def count_parameters(model_cfg) -> tuple[int, int, int]:
    """(parameters, d_model, n_layers) from the architecture alone: the model is built on the meta device."""
    import torch
    import transformers

    name = model_cfg.name
    if name == "tiny":
        config = transformers.LlamaConfig(vocab_size=49152, hidden_size=model_cfg.tiny_d_model,
                                          intermediate_size=2 * model_cfg.tiny_d_model,
                                          num_hidden_layers=model_cfg.tiny_layers, num_attention_heads=model_cfg.tiny_heads,
                                          tie_word_embeddings=True)
    elif name.startswith("hf:") and name[3:] in KNOWN_HUB_CONFIGS:
        cls, kwargs = KNOWN_HUB_CONFIGS[name[3:]]
        config = getattr(transformers, cls)(**kwargs)
    else:
        from chrono_membench.model import resolve_hf_dir

        config = transformers.AutoConfig.from_pretrained(resolve_hf_dir(name))
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), config.hidden_size, config.num_hidden_layers


def find_max_micro_batch(fits, start: int = 1, limit: int = 1024) -> int:
    """Largest m in [start, limit] with fits(m), assuming fits is monotone: grow by doubling until the first
    failure, then bisect between the last success and it. 0 if even `start` does not fit."""
    if not fits(start):
        return 0
    good, bad = start, None
    while bad is None:
        trial = good * 2
        if trial > limit:
            return good if good == limit or not fits(limit) else limit
        if fits(trial):
            good = trial
        else:
            bad = trial
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


# ---- a run's wall time, from the unit costs of a run measured on the same machine and model (plan.py --from-run)
EVAL_PARTS = ("probe_forward", "reference", "extraction", "canaries", "val", "sae_panel")  # the rest is per window


def step_tokens(cfg: dict) -> int:
    """Tokens one optimiser step trains (one process), from a config dict."""
    return tokens_consumed(1, cfg["train"]["micro_batch"], cfg["train"]["grad_accum"], cfg["data"]["seq_len"])


def step_seconds(cfg: dict, records: list[dict]) -> dict[int, float]:
    """The logged steps' seconds (train/tokens_per_s at every train.log_every-th step), by step."""
    return {r["step"]: step_tokens(cfg) / r[K.train("tokens_per_s")] for r in records if K.train("tokens_per_s") in r}


def chrono_steps(max_steps: int, chrono_every: int) -> set[int]:
    """The steps that also do the chrono cadence's work (the diversity share's calibration, the attention and SAE
    metrics): every chrono_every-th, the last, and the first update (μ's first calibration)."""
    return {1, max_steps, *range(chrono_every, max_steps + 1, chrono_every)}


def step_split(cfg: dict, records: list[dict]) -> tuple[float, float]:
    """Mean seconds of a logged plain step and of a logged chrono step (a kind none of whose steps was logged
    takes the other's mean): a run logging every 5th step logs a chrono step every 25 in 1 of 5 lines, not 1 of 25."""
    seconds, chrono = step_seconds(cfg, records), chrono_steps(cfg["train"]["max_steps"], cfg["train"]["chrono_every"])
    plain = [v for s, v in seconds.items() if s not in chrono] or list(seconds.values())
    at_cadence = [v for s, v in seconds.items() if s in chrono] or plain
    return statistics.fmean(plain), statistics.fmean(at_cadence)


def steps_total(cfg: dict, plain_s: float, chrono_s: float) -> float:
    """A run's training seconds: its plain steps at plain_s each, its chrono steps at chrono_s each."""
    n_chrono = len(chrono_steps(cfg["train"]["max_steps"], cfg["train"]["chrono_every"]))
    return (cfg["train"]["max_steps"] - n_chrono) * plain_s + n_chrono * chrono_s


def eval_steps(max_steps: int, eval_every: int) -> list[int]:
    """The steps a run evaluates at: 0, every eval_every, and the last."""
    return sorted({*range(0, max_steps + 1, eval_every), max_steps})


def checkpoint_steps(max_steps: int, every: int, warmed: bool = True) -> list[int]:
    """The steps a run checkpoints at: every `every` (step 0 after an SAE warm-up) and the last."""
    return sorted({*(s for s in range(0 if warmed else every, max_steps + 1, every)), max_steps})


def interim_candidates(chrono: dict) -> int:
    """Canary candidates an eval before the last scores (chrono.canary_interim_candidates; 0: all of them)."""
    return chrono.get("canary_interim_candidates") or chrono.get("canary_candidates", 1)


def probe_windows(step: int, per_bucket: int, n_buckets: int, max_steps: int) -> int:
    """Windows an eval at `step` scores: the unseen column from the start, and each bucket from its first step on
    (a bucket's reservoir fills within its first steps)."""
    started = 0 if step == 0 else min(n_buckets, math.ceil(step * n_buckets / max_steps))
    return per_bucket * (1 + started)


@dataclass
class UnitCosts:
    """Seconds per unit of work, measured on one finished run (unit_costs): what the same machine and model charge."""
    model: str
    step_s_per_token: float  # a training step (its SAEs included), per token of the step
    chrono_step_s: float  # what a step at the chrono cadence (chrono_steps) costs beyond a plain one
    probe_token_s: float  # the live model's forward over the probe windows (SAE capture included), per token
    reference_token_s: float  # the step-0 model on a window new to the probe set, per token
    greedy_token_s: float  # greedy decoding at the evals that run it, per decoded token
    candidate_s: float  # canaries at the last eval (the candidates' NLLs and as many sampled secrets), per candidate
    interim_candidate_s: float  # canaries at the evals before the last, per candidate
    window_s: float  # the rest of an eval (scores, tests, SAE statistics), per window
    fixed_eval_s: float  # validation loss and the SAE panel, per eval
    checkpoint_s: float  # one checkpoint with its artifacts and latent records
    warmup_token_s: float  # the SAE warm-up, per token
    fixed_s: float  # the rest of a session (loading, the final model export), once


def unit_costs(run_dir) -> UnitCosts:
    """Unit costs from a finished run: its metrics.jsonl (time/* and train/tokens_per_s), its config and its
    sessions.jsonl (the wall time the parts are taken from; the remainder is the fixed cost)."""
    import json

    from chrono_membench.config import read_yaml
    from chrono_membench.logging import read_metrics
    from chrono_membench.run_dir import RunDir

    run = RunDir(run_dir)
    cfg, records = read_yaml(run.config), read_metrics(run.metrics)
    t, c = cfg["train"], cfg["chrono"]
    evals = {r["step"]: r for r in records if "time/eval_s" in r}
    part = lambda r, name: r.get(f"time/eval_{name}_s", 0.0)  # noqa: E731
    n, B, T = c["probe_per_bucket"], c["n_buckets"], t["max_steps"]
    windows = {s: probe_windows(s, n, B, T) for s in evals}
    new = {s: windows[s] - max([windows[p] for p in evals if p < s], default=0) for s in evals}
    greedy = {s for s in evals if s == T or c.get("interim_greedy", True)}
    plain = [s for s in evals if s not in greedy]
    per_window_extraction = (sum(part(evals[s], "extraction") for s in plain) / sum(windows[s] for s in plain)
                             if plain else 0.0)
    final, interim = evals[T], [evals[s] for s in evals if s not in (0, T)]
    checkpoints = sorted(run.checkpoints.glob("step_*/manifest.json")) if run.checkpoints.exists() else []
    write_s = statistics.fmean(json.loads(p.read_text())["write_s"] for p in checkpoints) if checkpoints else 0.0
    records_s = [r["time/latent_records_s"] for r in records if "time/latent_records_s" in r]
    plain_s, chrono_s = step_split(cfg, records)
    costs = UnitCosts(
        model=cfg["model"]["name"], step_s_per_token=plain_s / step_tokens(cfg), chrono_step_s=chrono_s - plain_s,
        probe_token_s=sum(part(r, "probe_forward") for r in evals.values()) / (PROBE_TOKENS * sum(windows.values())),
        reference_token_s=sum(part(r, "reference") for r in evals.values()) / (PROBE_TOKENS * sum(new.values())),
        greedy_token_s=sum(max(part(evals[s], "extraction") - per_window_extraction * windows[s], 0.0) for s in greedy)
        / (SCORED_TOKENS * sum(windows[s] for s in greedy)),
        candidate_s=part(final, "canaries") / max(c.get("canary_candidates", 1), 1),
        interim_candidate_s=(statistics.fmean(part(r, "canaries") for r in interim) / interim_candidates(c))
        if interim else 0.0,
        window_s=sum(r["time/eval_s"] - sum(part(r, p) for p in EVAL_PARTS) + per_window_extraction * windows[s]
                     for s, r in evals.items()) / sum(windows.values()),
        fixed_eval_s=statistics.fmean(part(r, "val") + part(r, "sae_panel") for r in evals.values()),
        checkpoint_s=write_s + (sum(records_s) / len(records_s) if records_s else 0.0),
        warmup_token_s=next((r["time/sae_warmup_s"] / r[K.SAE_WARMUP_TOKENS] for r in records
                             if "time/sae_warmup_s" in r and r.get(K.SAE_WARMUP_TOKENS)), 0.0),
        fixed_s=0.0)
    wall = sum(s["wall_s"] for s in run.read_sessions())
    parts = wall_plan_parts(cfg, costs)
    costs.fixed_s = max(wall - sum(parts.values()), 0.0) if wall else 0.0
    return costs


def wall_plan_parts(cfg: dict, u: UnitCosts) -> dict[str, float]:
    """Seconds per part of a run (config as a dict: Config.to_dict() or config.yaml) at unit costs u."""
    t, c, ck = cfg["train"], cfg["chrono"], cfg["checkpointing"]
    T = t["max_steps"]
    n, B = c["probe_per_bucket"], c["n_buckets"]
    steps = eval_steps(T, t["eval_every"])
    windows = {s: probe_windows(s, n, B, T) for s in steps}
    evals = 0.0
    for i, s in enumerate(steps):
        w, new = windows[s], windows[s] - (windows[steps[i - 1]] if i else 0)
        evals += (u.fixed_eval_s + u.window_s * w + PROBE_TOKENS * (u.probe_token_s * w + u.reference_token_s * new)
                  + (SCORED_TOKENS * u.greedy_token_s * w if s == T or c.get("interim_greedy", True) else 0.0)
                  + (u.candidate_s * c.get("canary_candidates", 0) if s == T and c.get("canary_repetitions") else
                     u.interim_candidate_s * interim_candidates(c) if s and c.get("canary_repetitions") else 0.0))
    warmed = cfg["sae"]["enabled"] and cfg["sae"]["warmup_tokens"] > 0
    plain_s = step_tokens(cfg) * u.step_s_per_token
    return {"steps": steps_total(cfg, plain_s, plain_s + u.chrono_step_s), "evals": evals,
            "checkpoints": len(checkpoint_steps(T, ck["checkpoint_every_n_steps"], warmed)) * u.checkpoint_s,
            "sae_warmup": cfg["sae"]["warmup_tokens"] * u.warmup_token_s if warmed else 0.0, "fixed": u.fixed_s}
