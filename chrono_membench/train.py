"""The training loop, top to bottom: fine-tune an LM through its TransformerBridge on the packed mixture.

One `while True` loop (nanochat style). At the top of an iteration: eval, then checkpoint, for the step
just finished; then the gradient-accumulation micro-steps of the next update, then the SAEs' step on the
activations that update's forwards captured. `state.step` counts finished optimiser updates; every log line
carries the step it describes, and everything logged for step <= S is on disk before checkpoint S is
written, so a resume from S drops nothing and repeats nothing.

Who does what elsewhere: batches.py (seen log, probes, canaries, this rank's rows), sae.py (the SAE
bank), evaluation.py (every eval metric), checkpoint.py (the payload), artifacts.py (files), logging.py.
Under torchrun the same loop runs on every rank; the writers and the logger know their rank.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from chrono_membench import attention_rows, checkpoint, distributed
from chrono_membench import metric_keys as K
from chrono_membench.artifacts import (read_probe_scores, write_latent_records, write_probe_scores, write_probe_set,
                                       write_purity, write_sae_artifacts)
from chrono_membench.batches import Batches
from chrono_membench.checkpoint import TrainState
from chrono_membench.config import Config, dump_config, read_yaml
from chrono_membench.data import MixtureStream, Plants, collate, prefetched
from chrono_membench.data.sources import sample_provenance
from chrono_membench.distributed import Dist
from chrono_membench.errors import TrainingStopped
from chrono_membench.evaluation import (
    DiversityShare, attention_metrics, diversity_term, evaluate, lm_loss, qk_parameters, sample_queries,
)
from chrono_membench.latent_records import LatentRecords, latent_records
from chrono_membench.logging import make_logger, truncate_metrics
from chrono_membench.mfu import flops_per_token, peak_flops
from chrono_membench.model import autocast as model_autocast, export_hf_model, hf_state_dict, load_model, resolve_autocast
from chrono_membench.optim import build_optimizers, lr_multiplier
from chrono_membench.probes import Canaries, ProbeSet
from chrono_membench.registry import EvalContext
from chrono_membench.run_dir import RunDir, run_lock
from chrono_membench.safety import PreemptionGuard, check_resume_config, keys_added_since
from chrono_membench.sae import SAEBank, warm_up


# the SAE warm-up's rows: the training mixture on seed data.seed + this (far from a suite's seed shifts)
WARMUP_STREAM = 104_729


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
    eval_s: float = 0.0  # the evals' share of wall_s (time/eval_s summed)
    wandb_dir: Path | None = None


def train(cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> Summary:
    """Train (or, with resume, continue) the run in run_dir. One process per run directory (a lock), or one
    torchrun job; the first SIGTERM/SIGINT stops it cleanly after the step in flight (raises Preempted). A new run
    that fails before it has logged anything (a model or dataset that cannot load) leaves no directory behind."""
    d, device = distributed.from_environment(cfg.train.parallel, cfg.run.device)
    run_dir = RunDir(run_dir)
    created = not run_dir.root.exists()
    if d.main:
        run_dir.root.mkdir(parents=True, exist_ok=True)
    d.barrier()
    try:
        with run_lock(run_dir) if d.main else nullcontext(), PreemptionGuard() as preemption:
            return _train(cfg, run_dir, resume, progress and d.main, preemption, d, device)
    except BaseException:
        logged = run_dir.metrics.exists() and run_dir.metrics.stat().st_size > 0
        if created and d.main and not logged and not run_dir.list_checkpoints():
            shutil.rmtree(run_dir.root, ignore_errors=True)
        raise


def _train(cfg: Config, run_dir: RunDir, resume: bool, progress: bool, preemption: PreemptionGuard,
           d: Dist, device: torch.device) -> Summary:
    t_start, t = time.perf_counter(), cfg.train
    cfg.data.provenance = sample_provenance() if cfg.data.origin == "sample" else {}  # into config.yaml
    t.autocast = resolve_autocast(t.autocast, device)  # config.yaml records bf16 or fp32; a resume must agree
    if resume and run_dir.config.exists():  # before anything heavy: same experiment, or refuse
        saved = keys_added_since(read_yaml(run_dir.config), device.type)
        check_resume_config(run_dir, saved, cfg.to_dict(), write_log=d.main)
    if resume and not run_dir.list_checkpoints():  # stopped before its first checkpoint: start it again
        print(f"--resume: {run_dir.root} has no checkpoint yet; training it again from step 0", file=sys.stderr)
        resume = False
    if d.main:
        run_dir.write_text(run_dir.config, dump_config(cfg))
        if not resume:  # a run started again (after a stop before its first checkpoint) logs from a clean slate
            truncate_metrics(run_dir.metrics, -1)
    autocast = model_autocast(device, t.autocast)
    for seed_everything in (torch.manual_seed, random.seed, np.random.seed):
        seed_everything(cfg.run.seed)

    # ---- model, SAEs, data
    model, tokenizer = load_model(cfg.model, device, seed=cfg.run.seed)
    model.train()
    chrono = cfg.chrono.enabled
    reference = None  # the step-0 model, frozen, for reference losses (a deepcopy of a bridge shares its modules' state)
    if chrono and cfg.chrono.reference_loss:
        reference = load_model(cfg.model, device, seed=cfg.run.seed)[0].eval().requires_grad_(False)
    saes = SAEBank.for_model(cfg, model, tokenizer, device, d, reference) if cfg.sae.enabled else None
    val_rows = [r for _, r in zip(range(cfg.data.val_rows), MixtureStream(cfg.data, tokenizer, "val", repeat=False))]
    val = {k: v.to(device) for k, v in collate(val_rows).items()}
    probes = ProbeSet.for_run(cfg, tokenizer) if chrono else None  # with its unseen windows, never trained on
    canaries = Canaries(cfg, tokenizer, cfg.run.seed) if chrono and cfg.chrono.canary_repetitions else None
    plants = Plants.for_run(cfg, canaries, d.world)  # None without chrono.plant_file
    stream = prefetched(MixtureStream(cfg.data, tokenizer, split="train"), cfg.data.prefetch_rows)
    batches = Batches(stream, t.micro_batch, probes, canaries, d, plants)
    frozen = t.lr == 0 and t.muon_lr == 0  # forwards only (train/grad_norm logs 0): the LM is the step-0 model
    diversity_on = cfg.chrono.diversity and not frozen
    if diversity_on:  # its rows come from inside the attention kernel: sdpa or eager (attention_rows.py)
        attention_rows.require(model.original_model)
    shares = DiversityShare(qk_parameters(model.original_model))  # the q/k gradient share μ steers

    # ---- resume: the weights before data parallelism shards them; the rest once the optimisers exist
    ckpt = None
    if resume:
        found = checkpoint.latest_good_checkpoint(run_dir, required=checkpoint.REQUIRED + ("saes",) * (saes is not None))
        if found is None:
            raise FileNotFoundError(f"--resume: no good checkpoint under {run_dir.checkpoints}")
        path, ckpt = found
        checkpoint.check_world_size(path, ckpt, d)
        checkpoint.restore_model(ckpt, model, path)
    trained = distributed.wrap(model, d, device)  # the module the training forward goes through
    if t.compile:
        model.original_model.compile()  # in place: the bridge keeps calling the same module objects
    optimizers = build_optimizers(model.original_model, cfg)
    params = [p for p in model.original_model.parameters() if p.requires_grad]
    state = TrainState(diversity_mu=cfg.chrono.diversity_weight)
    if ckpt is not None:
        state = checkpoint.restore_training(ckpt, model, optimizers, saes, batches, d)
        if cfg.chrono.diversity_share == 0:  # a fixed μ (a checkpoint from before μ was saved holds none)
            state.diversity_mu = cfg.chrono.diversity_weight
        if d.main:
            truncate_metrics(run_dir.metrics, state.step)
            print(f"resumed from {path} (step {state.step})")
        del ckpt
    resumed_at = state.step if resume else None

    logger = make_logger(d.rank, run_dir, cfg)
    summary = Summary(run_dir=run_dir.root, wandb_dir=logger.wandb_dir)
    warmed = saes is not None and cfg.sae.warmup_tokens > 0 and not resume  # a resume restores the warm SAEs
    if warmed:  # the SAEs first learn the step-0 model (exported and checkpointed as step 0 below)
        rows = iter(MixtureStream(cfg.data, tokenizer, split="train", seed=cfg.data.seed + WARMUP_STREAM).next_row, None)
        logger.log(0, warm_up(saes, model, rows, cfg.sae.warmup_tokens, t.micro_batch, t.grad_accum, autocast, progress))

    def save() -> Path:  # everything logged so far is on disk before the checkpoint that covers it
        logger.flush()
        return checkpoint.save(run_dir, state, model, optimizers, saes, batches, d, cfg.checkpointing.keep_last)

    tokens_per_step = t.micro_batch * t.grad_accum * cfg.data.seq_len * d.world
    flat = [s for s in range(1, t.max_steps + 1)  # update s (1-based) runs at lr_multiplier(s − 1)
            if lr_multiplier(s - 1, t.max_steps, t.warmup_frac, t.warmdown_frac, t.final_lr_frac) == 1.0]
    full_lr, ckpt_every = (flat[0], flat[-1]) if flat else None, cfg.checkpointing.checkpoint_every_n_steps
    history = read_probe_scores(run_dir, state.step) if resume else []  # the forgetting records of earlier evals
    model_flops_per_token = flops_per_token(model.cfg, cfg.data.seq_len)
    device_peak_flops = peak_flops(device, t.peak_tflops) * d.world
    bar = tqdm(total=t.max_steps, initial=state.step, desc="train", disable=not progress, dynamic_ncols=True)
    try:
        while True:
            step = state.step
            last = step == t.max_steps
            fresh = step != resumed_at  # eval/checkpoint for a resumed step were done before it was saved
            checkpoint_due = fresh and (step > 0 or warmed) and (step % ckpt_every == 0 or last)
            records = None  # the checkpoint's latent records, folded from its step's eval forward (one process)
            if fresh and (step % t.eval_every == 0 or last):
                live = saes if saes is not None and saes.hook_points else None  # none if every SAE was retired
                if probes is not None and checkpoint_due and live and cfg.checkpointing.save_features and d.world == 1:
                    records = LatentRecords(saes, probes, device)
                ctx = EvalContext(model=model, step=step, chrono=cfg.chrono, autocast=autocast, device=device,
                                  seed=cfg.run.seed * 1_000_003 + step, dist=d, saes=live, reference=reference,
                                  probes=probes, seen=batches.seen, canaries=canaries, val=val,
                                  eval_tokens=cfg.sae.eval_tokens, micro_batch=t.micro_batch, final=last,
                                  records=records, progress=progress and d.main, full_lr=full_lr, history=history)
                metrics = evaluate(ctx)
                summary.eval_s += metrics["time/eval_s"]
                logger.log(step, metrics)
                logger.log_panels(step, ctx.matrices, saes.hook_points if saes is not None else [])
                for artifact in (write_purity(run_dir, step, ctx.matrices, ctx.density, d.rank)
                                 + write_probe_scores(run_dir, step, ctx.cache.get("forgetting_record"), d.rank)):
                    logger.log_artifact(*artifact)
                summary.val_ppl.append((step, metrics[K.val("ppl")]))
            saved_path = None
            if checkpoint_due:
                metrics, artifacts = K.data_stats(stream.stats()), []
                if saes is not None:
                    metrics.update(saes.on_checkpoint())  # drift vs the previous checkpoint; new alignment anchors
                    artifacts = write_sae_artifacts(run_dir, step, saes, cfg.checkpointing.save_sae_state,
                                                    cfg.checkpointing.save_features, d.rank)
                    if probes is not None and cfg.checkpointing.save_features and saes.hook_points:  # the dashboard's
                        t_records = time.perf_counter()
                        hook_records, windows = latent_records(model, saes, probes, autocast, device, records)
                        artifacts += write_latent_records(run_dir, step, hook_records, windows, d.rank)
                        metrics["time/latent_records_s"] = time.perf_counter() - t_records
                    saes.reset_feature_stats()
                logger.log(step, {**metrics, **logger.health()})
                saved_path = save()
                for artifact in artifacts:
                    logger.log_artifact(*artifact)
            bar.unpause()  # the rate shown is the training steps': an eval or a checkpoint is not one of them
            if last:
                break
            if d.any(preemption.requested is not None) and fresh:  # all is logged for this step; save it and go
                preemption.checkpoint = run_dir.checkpoint(step)  # once it is on disk, a second signal exits 4
                raise preemption.stopped(step, saved_path or save(), d.world, run_dir.root)

            # ---- one optimiser update: grad_accum micro-batches of micro_batch rows (per rank)
            t0 = time.perf_counter()
            lr_mult = lr_multiplier(step, t.max_steps, t.warmup_frac, t.warmdown_frac, t.final_lr_frac)
            for group in (g for opt in optimizers for g in opt.param_groups):
                group["lr"] = group["base_lr"] * lr_mult
            loss_sum, diversity_sum, data_s = torch.zeros((), device=device), 0.0, 0.0
            step_metrics = {}  # the first update and each ending at a chrono step measure the share μ steers:
            calibrate = diversity_on and bool(shares.qk) and (state.diversity_mu == 0 or (step + 1) % t.chrono_every == 0)
            for micro in range(t.grad_accum):
                t_data = time.perf_counter()
                batch = {k: v.to(device) for k, v in batches.next(step + 1, micro).items()}
                data_s += time.perf_counter() - t_data  # waiting for rows (prefetch: ~0) and the batch bookkeeping
                sync = micro == t.grad_accum - 1
                with ExitStack() as forward:
                    forward.enter_context(autocast)
                    if frozen:  # the frozen_lm arm: nothing would change the weights, so no graph is kept
                        forward.enter_context(torch.no_grad())
                    forward.enter_context(distributed.no_sync(trained, d, sync))
                    if saes is not None:
                        forward.enter_context(saes.capture(model, batch["tokens"], batch["source_index"]))
                    if diversity_on:  # the pattern's rows at sampled queries, from inside the SDPA kernel
                        queries = sample_queries(cfg, step, micro)
                        pattern_rows = forward.enter_context(attention_rows.capture(queries))
                    logits = trained(batch["tokens"])
                loss = lm_loss(logits, batch["tokens"], batch["source_index"])
                objective = loss
                if diversity_on:  # −μ · diversity: reward heads that attend differently
                    diversity = diversity_term(pattern_rows, queries, batch["source_index"])
                    if calibrate:  # ∇D on the q/k projections (one partial backward); ∇CE comes from .grad
                        shares.add(diversity, 1 / t.grad_accum)
                    objective = loss - state.diversity_mu * diversity
                    diversity_sum += diversity.item() / t.grad_accum
                if not frozen:
                    with distributed.no_sync(trained, d, sync):
                        (objective / t.grad_accum).backward()
                loss_sum += loss.detach()
            train_loss = d.mean((loss_sum / t.grad_accum).item())
            diversity_sum = d.mean(diversity_sum)
            if calibrate:  # of this update's q/k gradient; chrono.diversity_share then sets μ from the next one on
                realised, mu = shares.read(state.diversity_mu, cfg.chrono.diversity_share, d)
                if state.diversity_mu > 0 and math.isfinite(realised):
                    step_metrics[K.ATTN_GRAD_SHARE] = realised
                step_metrics[K.ATTN_MU] = state.diversity_mu = mu
            grad_norm = distributed.full_tensor(torch.nn.utils.clip_grad_norm_(params, t.grad_clip)).item()
            if math.isfinite(train_loss) and math.isfinite(grad_norm):
                for opt in optimizers:
                    opt.step()
                state.skipped_in_a_row = 0
            else:  # skip the update, count it; too many in a row means the run has diverged
                state.skipped, state.skipped_in_a_row = state.skipped + 1, state.skipped_in_a_row + 1
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            state.step = step = step + 1

            # ---- after the LM update: the SAEs step on what its forwards captured; chrono signals; logging
            chrono_step = step % t.chrono_every == 0 or step == t.max_steps
            if saes is not None and state.skipped_in_a_row:
                saes.discard_captured()
            elif saes is not None:
                step_metrics.update(saes.step(step, with_metrics=chrono_step))
            if chrono and chrono_step:
                t_attn = time.perf_counter()
                step_metrics.update(attention_metrics(model, val["tokens"][:t.micro_batch],
                                                      val["source_index"][:t.micro_batch], autocast))
                step_metrics["time/attn_metrics_s"] = time.perf_counter() - t_attn
                if diversity_on:
                    step_metrics[K.ATTN_TRAIN_TERM] = diversity_sum
            dt = time.perf_counter() - t0
            summary.tokens += tokens_per_step
            if math.isfinite(train_loss):
                summary.first_loss = train_loss if math.isnan(summary.first_loss) else summary.first_loss
                summary.last_loss = train_loss
            if step % t.log_every == 0 or step == t.max_steps or state.skipped_in_a_row:
                values = {"loss": train_loss, "ppl": math.exp(min(train_loss, 50.0)), "grad_norm": grad_norm,
                          "lr": optimizers[-1].param_groups[0]["lr"], "tokens_per_s": tokens_per_step / dt,
                          "skipped_steps": state.skipped, "data_wait_frac": data_s / dt}
                if device_peak_flops:
                    values["mfu"] = model_flops_per_token * tokens_per_step / dt / device_peak_flops
                if device.type == "cuda":
                    values["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                logger.log(step, {K.train(k): v for k, v in values.items()})
            if step_metrics:
                logger.log(step, step_metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
            if state.skipped_in_a_row > t.max_skipped_in_a_row:
                path = save()  # skipped updates left the weights as they were: the last good state
                raise TrainingStopped(f"{state.skipped_in_a_row} updates in a row had a non-finite loss or gradient "
                                      f"(train.max_skipped_in_a_row={t.max_skipped_in_a_row}); the last good weights "
                                      f"(from step {step - state.skipped_in_a_row}) are saved in {path}")
        final_state = hf_state_dict(model)  # under FSDP a collective: every rank gathers
        if d.main:
            export_hf_model(model, tokenizer, run_dir.final_model, final_state)
            checkpoint.shed_optimizer_states(run_dir, enabled=cfg.checkpointing.shed_optimizer)
        if probes is not None:
            write_probe_set(run_dir, probes, tokenizer, logger, d.rank)
        d.barrier()
    finally:
        bar.close()
        logger.close()
        stream.close()
    summary.steps, summary.skipped_steps = state.step, state.skipped
    summary.wall_s = time.perf_counter() - t_start
    return summary

