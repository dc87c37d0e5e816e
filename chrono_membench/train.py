"""The training loop, top to bottom: fine-tune an LM through its TransformerBridge on the packed mixture.

One `while True` loop (nanochat style). At the top of an iteration: eval, then checkpoint, for the step
just finished; then the gradient-accumulation micro-steps of the next update. `step` counts finished
optimiser updates; every log line carries the step it describes, and everything logged for step <= S is
on disk before checkpoint S is written, so a resume from S drops nothing and repeats nothing.

Under torchrun the same loop runs on every rank (distributed.py says who does what); `d.main` marks what
only rank 0 does: write metrics, checkpoints, artifacts and wandb.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chrono_membench import distributed
from chrono_membench.checkpoint import (
    checkpoint_dir, latest_good_checkpoint, list_checkpoints, save_checkpoint, write_failed,
)
from chrono_membench.config import Config, ConfigError, dump_config, read_yaml
from chrono_membench.data import PAD_SOURCE, MixtureStream, collate
from chrono_membench.distributed import ALONE, Dist
from chrono_membench.evaluation import attention_metrics, capture_patterns, diversity_term, probe_metrics, write_purity
from chrono_membench.logging import MetricsLogger, NullLogger, truncate_metrics
from chrono_membench.mfu import flops_per_token, peak_flops
from chrono_membench.model import export_hf_model, hf_state_dict, load_hf_state_dict, load_model
from chrono_membench.probes import Canaries, ProbeSet
from chrono_membench.safety import Preempted, PreemptionGuard, check_resume_config, run_lock
from chrono_membench.sae import SAEBank


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (too many non-finite steps); a checkpoint of the last good state exists."""


def lr_multiplier(step: int, max_steps: int, warmup_frac: float, warmdown_frac: float, final_lr_frac: float) -> float:
    """Linear warmup → constant → linear warmdown to final_lr_frac (DESIGN.md §3). `step` is 0-based."""
    warmup, warmdown = round(warmup_frac * max_steps), round(warmdown_frac * max_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step >= max_steps - warmdown:
        progress = (max_steps - step) / warmdown  # 1 at the start of warmdown → 1/warmdown at the last step
        return final_lr_frac + (1 - final_lr_frac) * progress
    return 1.0


def build_optimizers(hf_model: torch.nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
    """AdamW on everything, or (train.optimizer=muon) Muon on the 2-D hidden matrices and AdamW on
    embeddings, unembedding and norms, each with its own LR (seed 003)."""
    t = cfg.train
    fused = {"fused": True} if next(hf_model.parameters()).is_cuda else {}
    params = [(n, p) for n, p in hf_model.named_parameters() if p.requires_grad]
    if t.optimizer == "adamw":
        opt = torch.optim.AdamW([p for _, p in params], lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, **fused)
        return [opt]
    embeddings = {id(hf_model.get_input_embeddings().weight), id(hf_model.get_output_embeddings().weight)}
    matrices = [p for _, p in params if p.ndim == 2 and id(p) not in embeddings]
    others = [p for _, p in params if p.ndim != 2 or id(p) in embeddings]
    return [
        torch.optim.Muon(matrices, lr=t.muon_lr, weight_decay=t.weight_decay, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(others, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, **fused),
    ]


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor, source_index: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over real (non-padding) targets. logits [B,T,V], tokens [B,T]."""
    targets = tokens[:, 1:].masked_fill(source_index[:, 1:] == PAD_SOURCE, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def get_rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate(model, val: dict[str, torch.Tensor], micro_batch: int, autocast, d: Dist = ALONE) -> dict[str, float]:
    """Validation loss over all val rows; under torchrun each rank takes rows r, r+N, … and the sums are reduced.
    (Under FSDP every rank must run the same number of forwards: the ranks with fewer rows run an empty one.)"""
    was_training = model.training
    model.eval()
    tokens_all, sources_all = d.rows(val["tokens"]), d.rows(val["source_index"])
    n_batches = math.ceil(math.ceil(len(val["tokens"]) / d.world) / micro_batch)
    sums = torch.zeros(2, dtype=torch.float64)  # loss sum, target count
    for i in range(0, n_batches * micro_batch, micro_batch):
        tokens, sources = tokens_all[i:i + micro_batch], sources_all[i:i + micro_batch]
        if len(tokens) == 0:
            tokens, sources = val["tokens"][:1], torch.full_like(val["source_index"][:1], PAD_SOURCE)
        with autocast:
            logits = model(tokens)
        n = int((sources[:, 1:] != PAD_SOURCE).sum())
        if n:
            sums += torch.tensor([lm_loss(logits, tokens, sources).item() * n, n], dtype=torch.float64)
    model.train(was_training)
    total, count = d.sum_(sums).tolist()
    loss = total / count
    return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0))}


@torch.no_grad()
def sae_ce_recovered(model, saes: SAEBank, val: dict[str, torch.Tensor], micro_batch: int, autocast) -> dict:
    """CE-loss recovered on the first validation micro-batch, the SAE spliced in at its hook."""
    tokens, sources = val["tokens"][:micro_batch], val["source_index"][:micro_batch]
    loss_fn = lambda logits: lm_loss(logits, tokens, sources).item()  # noqa: E731
    with autocast:
        return saes.ce_recovered(model, tokens, loss_fn, loss_fn(model(tokens)))


def write_artifacts(directory: Path, saes: SAEBank, cfg: Config) -> list:
    """Written to a temporary directory and renamed, like checkpoints."""
    import shutil

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        written = saes.write_artifacts(tmp, cfg.checkpointing.save_sae_state, cfg.checkpointing.save_features)
    except OSError as e:
        previous = list_checkpoints(directory.parent.parent)
        raise write_failed(directory, tmp, e, previous[-1] if previous else None) from None
    directory.mkdir(parents=True, exist_ok=True)  # may already hold this step's purity matrices
    for item in tmp.iterdir():
        shutil.rmtree(directory / item.name, ignore_errors=True)
        item.rename(directory / item.name)
    tmp.rmdir()
    return [(directory / p.relative_to(tmp), name, kind) for p, name, kind in written]


def write_probe_table(run_dir: Path, probes: ProbeSet, tokenizer, logger: MetricsLogger) -> None:
    """The probe set as probe_set.json and as a wandb Table."""
    columns = ["bucket", "uid", "source", "first_step", "text"]
    rows = [[name, p.uid, p.source, p.first_step, tokenizer.decode(p.tokens)] for name, ps in probes.columns() for p in ps]
    (run_dir / "probe_set.json").write_text(json.dumps([dict(zip(columns, r)) for r in rows], indent=1))
    logger.log_table("probe_set", columns, rows)


@dataclass
class Summary:
    run_dir: Path
    steps: int = 0
    tokens: int = 0
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    val_ppl: list[tuple[int, float]] = field(default_factory=list)
    skipped_steps: int = 0
    wall_s: float = 0.0
    wandb_dir: Path | None = None


def train(cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> Summary:
    """Train (or, with resume, continue) the run in run_dir. One process per run directory (a lock), or one
    torchrun job; the first SIGTERM/SIGINT stops it cleanly after the step in flight (raises Preempted)."""
    d, device = distributed.from_environment(cfg.train.parallel, cfg.run.device)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    d.barrier()
    with run_lock(run_dir) if d.main else nullcontext(), PreemptionGuard() as preemption:
        return _train(cfg, run_dir, resume, progress and d.main, preemption, d, device)


def _train(cfg: Config, run_dir: Path, resume: bool, progress: bool, preemption: PreemptionGuard,
           d: Dist, device: torch.device) -> Summary:
    t_start = time.perf_counter()
    if resume and (run_dir / "config.yaml").exists():  # before anything heavy: same experiment, or refuse
        check_resume_config(run_dir, read_yaml(run_dir / "config.yaml"), cfg.to_dict(), write_log=d.main)
    if d.main:
        (run_dir / "config.yaml.tmp").write_text(dump_config(cfg))
        (run_dir / "config.yaml.tmp").replace(run_dir / "config.yaml")  # atomic: never half a config
    t = cfg.train
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    torch.manual_seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)

    # ---- model, data, optimisers
    model, tokenizer = load_model(cfg.model, device, seed=cfg.run.seed)
    hf_model = model.original_model
    model.train()
    stream = MixtureStream(cfg.data, tokenizer, split="train")
    val_stream = MixtureStream(cfg.data, tokenizer, split="val", repeat=False)
    val_rows = [r for _, r in zip(range(cfg.data.val_rows), val_stream)]
    val = {k: v.to(device) for k, v in collate(val_rows).items()}
    saes = SAEBank(cfg, model.cfg.d_model, model.cfg.n_layers, device, cfg.run.seed, d) if cfg.sae.enabled else None
    chrono = cfg.chrono.enabled
    probes = ProbeSet(cfg.chrono.n_buckets, cfg.chrono.probe_per_bucket, t.max_steps, cfg.run.seed) if chrono else None
    if probes is not None:  # "unseen" probes: validation documents, never trained on
        probes.fill_unseen(MixtureStream(cfg.data, tokenizer, "val", seed=cfg.data.seed + 1, repeat=False).documents())
    canaries = Canaries(cfg, tokenizer, cfg.run.seed) if chrono and cfg.chrono.canary_repetitions else None
    diversity_weight = cfg.chrono.diversity_weight if chrono else 0.0
    seen_log: dict[str, list[int]] = {}  # document uid → [first step seen, last step seen]
    step, skipped, skipped_in_a_row = 0, 0, 0

    # ---- resume (the weights before sharding; optimiser states once the optimisers exist)
    ckpt = None
    if resume:
        found = latest_good_checkpoint(run_dir)
        if found is None:
            raise FileNotFoundError(f"--resume: no good checkpoint under {run_dir / 'checkpoints'}")
        path, ckpt = found
        saved_world = ckpt["state"].get("world_size", 1)
        if saved_world != d.world:
            raise ConfigError(f"--resume: {path} was written by {saved_world} process(es); resume it with the same "
                              f"world size (torchrun --nproc_per_node {saved_world}), not {d.world}")
        load_hf_state_dict(model, ckpt["model"])

    # ---- data parallelism, optimisers
    trained = distributed.wrap(model, d, device)  # the module the training forward goes through
    if t.compile:
        hf_model.compile()  # in place: the bridge keeps calling the same module objects
    optimizers = build_optimizers(hf_model, cfg)
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    params = [p for p in hf_model.parameters() if p.requires_grad]
    if ckpt is not None:
        distributed.load_optimizer_state(model, optimizers, ckpt["optim"], d)
        state = ckpt["state"]
        stream.load_state_dict(state["stream"])
        seen_log, step, skipped = state["seen_log"], state["step"], state["skipped"]
        if saes is not None:
            saes.load_state_dict(ckpt["saes"])
        if probes is not None:
            probes.load_state_dict(state["probes"])
        set_rng_state(state["rng"])
        if d.main:
            truncate_metrics(run_dir / "metrics.jsonl", step)
            print(f"resumed from {path} (step {step})")
        del ckpt
    resumed_at = step if resume else None

    logger = MetricsLogger(run_dir, cfg.to_dict(), cfg.logging.wandb_mode, cfg.logging.project,
                           cfg.logging.group or cfg.run.preset or "default", cfg.run.ablation,
                           run_dir.name) if d.main else NullLogger()
    summary = Summary(run_dir=run_dir, wandb_dir=logger.wandb_dir)

    def checkpoint() -> Path:
        """The cadence checkpoint: data stats, SAE drift and new alignment anchors, artifacts, then the state."""
        metrics = {"data/" + k: v for k, v in _flat(stream.stats()).items()}
        artifacts = []
        if saes is not None:
            metrics.update(saes.on_checkpoint())  # drift vs the previous checkpoint; new alignment anchors
            if d.main:
                artifacts = write_artifacts(run_dir / "artifacts" / f"step_{step:08d}", saes, cfg)
            saes.reset_feature_stats()
        if logger.wandb_run is not None:
            metrics["logging/artifact_upload_failures"] = logger.artifact_failures
            metrics["logging/artifacts_pending"] = len(logger.pending_artifacts)
        logger.log(step, metrics)
        path = save_state()
        for artifact in artifacts:
            logger.log_artifact(*artifact)
        return path

    def save_state() -> Path:
        """Everything needed to continue exactly; no side effect on the run (what preemption saves). The
        stream, seen log, probes, RNG and SAEs are the same on every rank (distributed.py), so rank 0's copy
        resumes them all; under FSDP the weights and optimiser states are gathered first (all ranks)."""
        logger.flush()
        payload = {
            "model": hf_state_dict(model),
            "optim": distributed.optimizer_state(model, optimizers, d),
            "state": {"step": step, "stream": stream.state_dict(), "seen_log": seen_log, "skipped": skipped,
                      "rng": get_rng_state(), "probes": probes.state_dict() if probes is not None else None,
                      "world_size": d.world},
        }
        if saes is not None:
            payload["saes"] = saes.state_dict()
        path = save_checkpoint(run_dir, step, payload, cfg.checkpointing.keep_last) if d.main else None
        d.barrier()  # no rank runs ahead of a checkpoint that may still fail (exit 5 on rank 0 stops the job)
        return path or checkpoint_dir(run_dir) / f"step_{step:08d}"

    tokens_per_step = t.micro_batch * t.grad_accum * cfg.data.seq_len * d.world
    model_flops_per_token = flops_per_token(model.cfg, cfg.data.seq_len)
    device_peak_flops = peak_flops(device, t.peak_tflops) * d.world
    bar = tqdm(total=t.max_steps, initial=step, desc="train", disable=not progress, dynamic_ncols=True)
    try:
        while True:
            last = step == t.max_steps
            fresh = step != resumed_at  # eval/checkpoint for a resumed step were done before it was saved
            if fresh and (step % t.eval_every == 0 or last):
                t_eval = time.perf_counter()
                metrics = evaluate(model, val, t.micro_batch, autocast, d)
                if saes is not None:
                    metrics.update(sae_ce_recovered(model, saes, val, t.micro_batch, autocast))
                purity_files = []
                if probes is not None:
                    chrono_metrics, matrices = probe_metrics(model, saes, probes, canaries,
                                                             stream.stats()["token_share"], autocast, device, d)
                    metrics.update(chrono_metrics)
                    if d.main:
                        purity_files = write_purity(run_dir / "artifacts" / f"step_{step:08d}", matrices)
                metrics["time/eval_s"] = time.perf_counter() - t_eval
                logger.log(step, metrics)
                for artifact in purity_files:
                    logger.log_artifact(*artifact)
                summary.val_ppl.append((step, metrics["val/ppl"]))
            saved_path = None
            if fresh and step > 0 and (step % cfg.checkpointing.checkpoint_every_n_steps == 0 or last):
                saved_path = checkpoint()
            if last:
                break
            if d.any(preemption.requested is not None) and fresh:  # all is logged for this step; save it and go
                path = saved_path or save_state()
                by = preemption.name or "a signal to another rank"
                launcher = f"torchrun --nproc_per_node {d.world}" if d.world > 1 else "python"
                raise Preempted(f"stopped by {by} at step {step}; checkpoint {path}; "
                                f"continue with: {launcher} experiments/run.py --resume {run_dir}")

            # ---- one optimiser update: grad_accum micro-batches of micro_batch rows
            t0 = time.perf_counter()
            lr_mult = lr_multiplier(step, t.max_steps, t.warmup_frac, t.warmdown_frac, t.final_lr_frac)
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * lr_mult
            loss_sum, diversity_sum = torch.zeros((), device=device), 0.0
            for micro in range(t.grad_accum):
                # The global micro-batch (all ranks' rows), bookkept and canaried whole, then this rank's rows.
                rows = [stream.next_row() for _ in range(t.micro_batch * d.world)]
                for doc in (doc for r in rows for doc in r.docs):
                    if probes is not None and doc.uid not in seen_log:
                        probes.offer(doc.uid, doc.source, doc.tokens, step + 1)
                    seen_log.setdefault(doc.uid, [step + 1, step + 1])[1] = step + 1
                batch = collate(rows)
                if canaries is not None and micro == 0:
                    canaries.insert(batch["tokens"], batch["source_index"], step + 1)
                batch = {k: d.rows(v).to(device) for k, v in batch.items()}
                with ExitStack() as stack:
                    stack.enter_context(autocast)
                    stack.enter_context(distributed.no_sync(trained, d, sync=micro == t.grad_accum - 1))
                    if saes is not None:
                        stack.enter_context(saes.capture(model))
                    patterns = stack.enter_context(capture_patterns(model)) if diversity_weight > 0 else None
                    logits = trained(batch["tokens"])
                loss = lm_loss(logits, batch["tokens"], batch["source_index"])
                objective = loss
                if patterns is not None:  # −μ · diversity: reward heads that attend differently
                    queries = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + step * 1009 + micro)
                    diversity = diversity_term(patterns, cfg.chrono.probe_queries, queries)
                    objective = loss - diversity_weight * diversity
                    diversity_sum += diversity.item() / t.grad_accum
                with distributed.no_sync(trained, d, sync=micro == t.grad_accum - 1):
                    (objective / t.grad_accum).backward()
                loss_sum += loss.detach()
            train_loss = d.mean((loss_sum / t.grad_accum).item())
            diversity_sum = d.mean(diversity_sum)
            grad_norm = distributed.full_tensor(torch.nn.utils.clip_grad_norm_(params, t.grad_clip)).item()
            if math.isfinite(train_loss) and math.isfinite(grad_norm):
                for opt in optimizers:
                    opt.step()
                skipped_in_a_row = 0
            else:  # skip the update, count it; too many in a row means the run has diverged
                skipped, skipped_in_a_row = skipped + 1, skipped_in_a_row + 1
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            step += 1
            sae_metrics = {}
            if saes is not None:  # after the LM update, on the activations its forward captured
                if skipped_in_a_row:
                    saes.discard_captured()
                else:
                    sae_metrics = saes.step(step, with_metrics=step % t.chrono_every == 0 or step == t.max_steps)
            if chrono and (step % t.chrono_every == 0 or step == t.max_steps):
                t_attn = time.perf_counter()
                sae_metrics.update(attention_metrics(model, val["tokens"][:t.micro_batch], autocast))
                sae_metrics["time/attn_metrics_s"] = time.perf_counter() - t_attn
                if diversity_weight > 0:
                    sae_metrics["chrono/attn_diversity/train_term"] = diversity_sum
            dt = time.perf_counter() - t0
            summary.tokens += tokens_per_step
            if math.isfinite(train_loss):
                summary.first_loss = train_loss if math.isnan(summary.first_loss) else summary.first_loss
                summary.last_loss = train_loss
            if step % t.log_every == 0 or step == t.max_steps or skipped_in_a_row:
                logger.log(step, {
                    "train/loss": train_loss, "train/ppl": math.exp(min(train_loss, 50.0)),
                    "train/lr": optimizers[-1].param_groups[0]["lr"], "train/grad_norm": grad_norm,
                    "train/tokens_per_s": tokens_per_step / dt, "train/skipped_steps": skipped,
                    **({"train/mfu": model_flops_per_token * tokens_per_step / dt / device_peak_flops}
                       if device_peak_flops else {}),
                })
            if sae_metrics:
                logger.log(step, sae_metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
            if skipped_in_a_row > t.max_skipped_in_a_row:
                path = save_state()  # skipped updates left the weights as they were: the last good state
                raise TrainingStopped(
                    f"{skipped_in_a_row} updates in a row had a non-finite loss or gradient "
                    f"(train.max_skipped_in_a_row={t.max_skipped_in_a_row}); the last good weights "
                    f"(from step {step - skipped_in_a_row}) are saved in {path}"
                )
        final_state = hf_state_dict(model)  # under FSDP a collective: every rank gathers
        if d.main:
            export_hf_model(model, tokenizer, run_dir / "final_model", final_state)
            if probes is not None:
                write_probe_table(run_dir, probes, tokenizer, logger)
        d.barrier()
    finally:
        bar.close()
        logger.close()
    summary.steps, summary.skipped_steps = step, skipped
    summary.wall_s = time.perf_counter() - t_start
    return summary


def _flat(stats: dict) -> dict:
    out = {}
    for key, value in stats.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out

