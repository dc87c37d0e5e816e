"""The ablation suite side by side: a table of final metrics and overlaid curves.

    python analysis/compare_ablations.py runs/<suite>-full runs/<suite>-no_dropout ... --out figures/
    python analysis/compare_ablations.py --wandb ENTITY/PROJECT/RUN_ID --wandb ... --out figures/
"""

from __future__ import annotations

import plotly.graph_objects as go

from common import parse_args, save_figure, write_json
from training_curves import curves_figure

from chrono_membench import metric_keys as K

PREFIXES = ("val/", "sae/", "chrono/", "mem/loss_gap", "mem/canary_exposure", "train/loss")


def main() -> None:
    args = parse_args(__doc__)
    runs = args.loaded
    finals = {r.label: r.final() for r in runs}
    keys = sorted({k for f in finals.values() for k in f if k.startswith(PREFIXES) and "/layer_" not in k})
    table = go.Figure(go.Table(
        header={"values": ["metric"] + list(finals), "align": "left"},
        cells={"values": [keys] + [[f"{f[k]:.4g}" if k in f else "–" for k in keys] for f in finals.values()],
               "align": "left"}))
    table.update_layout(title="Final metrics by ablation", height=max(400, 24 * len(keys)))
    print(save_figure(table, args.out, "ablations_table"))
    write_json(args.out, "ablations_final", finals)
    hooks = sorted({K.hook_of(k) for r in runs for k in r.keys("sae/")} - {None})
    panels = [K.val("loss"), K.MEM_LOSS_GAP, K.ATTN_DIVERSITY_MEAN, K.ATTN_DIVERSITY_NOSINK_MEAN, K.DROPOUT_RATE]
    for hook in hooks:
        panels += [K.sae(hook, "fve"), K.sae(hook, "ce_recovered"), K.chrono(hook, "alignment_loss"),
                   K.chrono(hook, "mmcs"), K.chrono(hook, "temporal_purity_excess"), K.chrono(hook, "source_purity_excess")]
    print(save_figure(curves_figure(runs, panels, "Ablations over training"), args.out, "ablations_curves"))


if __name__ == "__main__":
    main()
