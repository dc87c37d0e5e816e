"""What a run writes besides checkpoints and metrics, each file through run_dir.atomic_write, at the path
RunDir.artifact names (run_dir.ARTIFACTS: the one table of file names, which the analysis scripts read too):

    artifacts/step_N/variant_<name>/               the same sae_<hook>/ and features_<hook> of SAE variant <name>
    artifacts/step_N/sae_<hook>/                   sae-lens inference SAE (activation scaling folded in, so it
                                                   takes raw activations; SAE.load_from_disk reads it)
    artifacts/step_N/features_<hook>.safetensors   fp16 unit decoder rows, firing frequency, mean activation
    artifacts/step_N/purity_<hook>.safetensors     fp16 temporal, source, share-normalised source purity
    artifacts/step_N/density_<hook>.safetensors    latents' firing frequency on the eval panel, log10 histogram
    artifacts/step_N/latents_<hook>.safetensors    per-latent records from the probe windows (latent_records.py)
    artifacts/step_N/windows.json                  the probe windows those records index (uid, column, tokens)
    artifacts/step_N/memorisation_latents_<hook>.json  latents whose prefix activation best separates memorised
                                                   probe windows (within-bucket AUROC), best first
    artifacts/step_N/probe_scores.json             per eval: each seen window's Δloss (the forgetting curves)
    probe_set.json                                 the probe documents, decoded (also a wandb Table)

Each writer returns (path, wandb artifact name, artifact type) for the logger to upload.
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from chrono_membench.hooks import file_name
from chrono_membench.probes import PREFIX_TOKENS, ProbeSet
from chrono_membench.run_dir import RunDir, atomic_write

Written = list[tuple]  # (path, artifact name, artifact type)
DENSITY_BINS = 40  # log10 firing frequency from −10 to 0, 0.25 a bin


def write_sae_artifacts(run_dir: RunDir, step: int, saes, save_sae: bool, save_features: bool, rank: int = 0,
                        variant: str = "") -> Written:
    """Rank 0 writes (the SAEs are identical on every rank); the others return nothing. Each SAE variant's files
    go to artifacts/step_N/variant_<name>/ (the same names)."""
    if rank != 0:
        return []
    previous, written = run_dir.latest_checkpoint_path(), []
    for name, bank in ({} if variant else saes.variants).items():
        written += write_sae_artifacts(run_dir, step, bank, save_sae, save_features, rank, variant=name)
    tag = f"variant-{variant}-" if variant else ""  # wandb artifact names
    for hook in saes.hook_points:
        name = file_name(hook)
        if save_sae:
            path = run_dir.artifact(step, "sae", hook, variant)
            with atomic_write(path, reference=previous) as tmp:
                saes.inference_sae(hook, step).save_inference_model(tmp)
            written.append((path, f"{tag}sae-{name}", "sae"))
        if save_features:
            stats = saes.feature_stats(hook)
            path = run_dir.artifact(step, "features", hook, variant)
            tensors = {k: stats[k].half().cpu().contiguous() for k in ("decoder_unit", "firing_frequency",
                                                                         "mean_activation")}
            with atomic_write(path, reference=previous) as tmp:
                save_file(tensors, str(tmp), metadata={"hook": hook, "tokens": str(stats["tokens"])})
            written.append((path, f"{tag}features-{name}", "features"))
    if not variant and getattr(saes, "crosscoder", None) is not None and save_sae:
        from chrono_membench.crosscoder import save as save_crosscoder

        cc = saes.crosscoder
        weights = run_dir.artifact(step, "crosscoder", cc.hook)
        latents = run_dir.artifact(step, "crosscoder_latents", cc.hook)
        with atomic_write(weights, reference=previous) as tmp, atomic_write(latents, reference=previous) as tmp_l:
            save_crosscoder(cc, tmp, tmp_l, {**saes.metadata, "chrono_membench_step": step}, step)
        written += [(weights, f"crosscoder-{file_name(cc.hook)}", "crosscoder")]
    return written


def write_purity(run_dir: RunDir, step: int, matrices: dict, density: dict | None = None, rank: int = 0) -> Written:
    """purity_<hook>.safetensors (fp16) per SAE, and density_<hook>.safetensors (each latent's firing frequency on
    the eval panel's tokens, and the histogram of its log10), by rank 0. A full disk raises RunWriteError."""
    if rank != 0:
        return []
    previous, written = run_dir.latest_checkpoint_path(), []
    for hook, frequency in (density or {}).items():
        path = run_dir.artifact(step, "density", hook)
        log10 = frequency.clamp(min=1e-10).log10()  # never-firing latents land in the lowest bin (−10)
        counts = torch.histc(log10, bins=DENSITY_BINS, min=-10, max=0)
        with atomic_write(path, reference=previous) as tmp:
            save_file({"firing_frequency": frequency.cpu().contiguous(), "log10_histogram": counts.cpu(),
                       "bin_edges": torch.linspace(-10, 0, DENSITY_BINS + 1)}, str(tmp), metadata={"hook": hook})
        written.append((path, f"density-{file_name(hook)}", "density"))
    for hook, m in matrices.items():
        if "memorisation_latents" in m:  # [(latent, within-bucket AUROC)], best first
            path = run_dir.artifact(step, "memorisation_latents", hook)
            run_dir.write_text(path, json.dumps({"hook": hook, "latents": m["memorisation_latents"]}))
            written.append((path, f"memorisation-latents-{file_name(hook)}", "memorisation_latents"))
        if "selective_latents" in m:  # {"time" | "source": [{latent, q}]}: the FDR-selected latents
            path = run_dir.artifact(step, "selective_latents", hook)
            run_dir.write_text(path, json.dumps({"hook": hook, **m["selective_latents"]}))
            written.append((path, f"selective-latents-{file_name(hook)}", "selective_latents"))
        if "temporal" not in m:
            continue
        path = run_dir.artifact(step, "purity", hook)
        tensors = {k: m[k] for k in ("temporal", "source") if k in m}
        with atomic_write(path, reference=previous) as tmp:
            save_file({k: v.half().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"hook": hook, "temporal_columns": json.dumps(m["columns"]),
                                "source_columns": json.dumps(m.get("source_columns", []))})
        written.append((path, f"purity-{file_name(hook)}", "purity"))
    return written


def write_probe_scores(run_dir: RunDir, step: int, rec: dict | None, rank: int = 0) -> Written:
    """artifacts/step_N/probe_scores.json: the eval's forgetting record (each seen window's first step and Δloss, the
    unseen windows' mean Δloss; chrono/forgetting.py), what a resume and analysis/forgetting.py read back."""
    if rank != 0 or rec is None:
        return []
    path = run_dir.artifact(step, "probe_scores")
    run_dir.write_text(path, json.dumps({"step": step, **rec}))
    return [(path, "probe-scores", "probe_scores")]


def read_probe_scores(run_dir: RunDir, up_to: int) -> list[tuple[int, dict]]:
    """The forgetting records of the evals at steps ≤ up_to, oldest first (a resumed run's history)."""
    out = []
    for step, path in run_dir.artifact_steps("probe_scores"):
        if step <= up_to:
            rec = json.loads(path.read_text())
            out.append((step, {"unseen_delta": rec["unseen_delta"], "windows": rec["windows"]}))
    return out


def write_probe_set(run_dir: RunDir, probes: ProbeSet, tokenizer, logger, rank: int = 0) -> None:
    """The probe set as probe_set.json and as a wandb Table, by rank 0."""
    if rank != 0:
        return
    columns = ["bucket", "uid", "source", "step", "row", "offset", "ref_loss", "context", "scored"]
    rows = [[name, p.uid, p.source, p.step, p.row, p.offset, p.ref_loss, tokenizer.decode(p.tokens[:PREFIX_TOKENS]),
             tokenizer.decode(p.tokens[PREFIX_TOKENS:])] for name, ps in probes.columns() for p in ps]
    run_dir.write_text(run_dir.probe_set, json.dumps([dict(zip(columns, r)) for r in rows], indent=1))
    logger.log_table("probe_set", columns, rows)


def write_latent_records(run_dir: RunDir, step: int, records: dict, windows: list[dict], rank: int = 0) -> Written:
    """latents_<hook>.safetensors per SAE and the windows they index (windows.json), by rank 0."""
    if rank != 0 or not records:
        return []
    previous, written = run_dir.latest_checkpoint_path(), []
    run_dir.write_text(run_dir.artifact(step, "windows"), json.dumps(windows))
    for hook, r in records.items():
        path = run_dir.artifact(step, "latents", hook)
        tensors = {k: v.cpu().contiguous() for k, v in r.items() if isinstance(v, torch.Tensor)}
        with atomic_write(path, reference=previous) as tmp:
            save_file(tensors, str(tmp), metadata={"hook": hook, "columns": json.dumps(r["columns"])})
        written.append((path, f"latents-{file_name(hook)}", "latents"))
    return written
