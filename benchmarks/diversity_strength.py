"""How hard the attention-diversity regulariser pulls, against the LM loss, at several μ and at the μ the preset's
chrono.diversity_share would set: why a μ moves head diversity or not, without a training run per μ.

    python benchmarks/diversity_strength.py [--preset demo] [--batches 4] [key=value ...]

On a few micro-batches of the preset's data it takes the gradient of the LM loss and of the diversity term
(docs/design.md §4.3, the training-time term with its random query subset) separately, over the model's
parameters, and prints ‖∇D‖ / ‖∇CE‖ (all parameters, and only the query/key projections the term acts on
first), their cosine, and what that makes μ · ‖∇D‖ / ‖∇CE‖ for several μ. Adam divides each gradient element by
a running √v that the LM loss dominates, so μ · ‖∇D‖ / ‖∇CE‖ is about the share of each update the regulariser
steers: at 1 % or less it cannot move diversity beyond the noise of a short run.
"""

from __future__ import annotations

import argparse

import torch

from chrono_membench import attention_rows
from chrono_membench.config import load_config
from chrono_membench.data import MixtureStream, collate
from chrono_membench.distributed import resolve_device
from chrono_membench.evaluation import diversity_term, lm_loss, sample_queries
from chrono_membench.model import load_model


def flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def gradient_shares(cfg, n_batches: int, mus: tuple[float, ...] = ()) -> dict:
    """‖∇D‖ / ‖∇CE‖ over all parameters and over the q/k projections, their cosine, and the mean LM loss and
    diversity term, on n_batches micro-batches of cfg's data; and for each μ in `mus`, the share measured on the
    training objective itself, CE − μ·D as train.py forms it: ‖∇(CE − μD) − ∇CE‖ / ‖∇CE‖ ("shares")."""
    device = resolve_device(cfg.run.device)
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, device)
    named = [(n, p) for n, p in model.original_model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    qk = torch.cat([torch.full((p.numel(),), any(s in n for s in ("q_proj", "k_proj")), dtype=torch.bool)
                    for n, p in named])
    stream = MixtureStream(cfg.data, tokenizer)
    ce_sum, div_sum, losses, diversities = 0, 0, [], []
    objective_sums = dict.fromkeys(mus, 0)
    for b in range(n_batches):
        batch = {k: v.to(device) for k, v in collate([stream.next_row() for _ in range(cfg.train.micro_batch)]).items()}
        queries = sample_queries(cfg, b, 0)  # the query rows training would draw for batch b
        with attention_rows.capture(queries) as rows:  # as in training: the rows from inside the SDPA kernel
            loss = lm_loss(model(batch["tokens"]), batch["tokens"], batch["source_index"])
        diversity = diversity_term(rows, queries, batch["source_index"])
        ce_sum = ce_sum + flat_grad(loss, params)
        div_sum = div_sum + flat_grad(diversity, params)
        for mu in mus:
            objective_sums[mu] = objective_sums[mu] + flat_grad(loss - mu * diversity, params)
        losses.append(loss.item())
        diversities.append(diversity.item())
    # the step's gradients are means over its micro-batches, as in training
    g_ce, g_div = ce_sum / n_batches, div_sum / n_batches
    return {"ratio": (g_div.norm() / g_ce.norm()).item(), "ratio_qk": (g_div[qk].norm() / g_ce[qk].norm()).item(),
            "qk_params": int(qk.sum()), "params": qk.numel(),
            "cosine": torch.nn.functional.cosine_similarity(g_ce, g_div, dim=0).item(),
            "lm_loss": sum(losses) / n_batches, "diversity": sum(diversities) / n_batches,
            "shares": {mu: ((g / n_batches - g_ce).norm() / g_ce.norm()).item() for mu, g in objective_sums.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.preset, overrides=args.overrides)
    mus = sorted({cfg.chrono.diversity_weight, 0.01, 0.1, 1.0, 10.0} - {0.0})
    r = gradient_shares(cfg, args.batches, tuple(mus))
    print(f"{cfg.model.name}: {args.batches} micro-batches of {cfg.train.micro_batch} x {cfg.data.seq_len} tokens; "
          f"LM loss {r['lm_loss']:.3f}, diversity term {r['diversity']:.4f} ({cfg.chrono.probe_queries} query positions)")
    print(f"|grad D| / |grad CE| = {r['ratio']:.4f} over all parameters, {r['ratio_qk']:.4f} over q/k projections "
          f"({r['qk_params']:,} of {r['params']:,}); cosine(grad CE, grad D) = {r['cosine']:+.4f}")
    print(f"{'mu':>8s}  |grad(CE - mu D) - grad CE|/|grad CE|  (q/k: mu*|grad D|/|grad CE|)")
    for mu in mus:
        mark = "  <- preset" if mu == cfg.chrono.diversity_weight else ""
        print(f"{mu:8g}  {r['shares'][mu]:37.4%}  {mu * r['ratio_qk']:.4%}{mark}")
    if cfg.chrono.diversity_share > 0:  # what train.py's calibration would set on these batches
        print(f"chrono.diversity_share = {cfg.chrono.diversity_share:g} sets mu = share / (|grad D| / |grad CE| on q/k) "
              f"= {cfg.chrono.diversity_share / r['ratio_qk']:.4g} here (train.py measures it on one micro-batch)")


if __name__ == "__main__":
    main()
