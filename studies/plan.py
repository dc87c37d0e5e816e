"""Planning arithmetic (docs/design.md §6): tokens, epochs, Chinchilla, time budgets, storage.

Each formula is a small function, tested on hand-made inputs (the worked examples of docs/design.md §6 included). The
measured inputs (documents, bytes and tokens per source; tokens/s; artifact shapes) come from the data, the
tokenizer, the model's config and `experiments/tune.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chrono_membench import evaluation  # noqa: F401  (its import registers every built-in eval metric)
from chrono_membench import metric_keys as K
from chrono_membench.config import Config
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
