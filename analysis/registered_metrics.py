"""Every registered eval metric that asks for a panel (chrono_membench/registry.py: the blind baselines, and any a
user registers) over training, one figure per metric and run — the same figure the run's wandb workspace shows as
panels/metric/<name>, drawn from metrics.jsonl.

    python analysis/registered_metrics.py runs/<name> --out figures/
"""

from __future__ import annotations

from common import parse_args, save_figure

from chrono_membench import evaluation  # noqa: F401  (its import registers every built-in eval metric)
from chrono_membench.panels import metric_figure
from chrono_membench.registry import REGISTRY, KeySpace


def main() -> None:
    args = parse_args(__doc__)
    for run in args.loaded:
        hooks = sorted({k.split("/")[1] for k in run.keys("sae/") if k.count("/") == 2 and ".hook_" in k})
        try:
            space = KeySpace.of(run.config, hooks)
        except (KeyError, TypeError):  # a run whose config lacks the sections (e.g. read from wandb without them)
            print(f"{run.name}: its config does not say the run's shape (chrono, sae, data); skipped")
            continue
        drawn = 0
        for metric in (m for m in REGISTRY.values() if m.panel):
            fig = metric_figure(run.metrics, metric, space)
            if fig is not None:
                fig.update_layout(title=f"{metric.title or metric.name} · {run.label}", template="plotly_white")
                print(save_figure(fig, args.out, f"metric_{metric.name}_{run.label}"))
                drawn += 1
        if not drawn:
            print(f"{run.name}: no registered metric with a panel logged anything")


if __name__ == "__main__":
    main()
