"""A saved wandb workspace for a project of chrono-membench runs (wandb-workspaces): the panels a researcher
opens first, laid out once, with the runs grouped by ablation so a suite reads as arm means with seed bands.

    python analysis/wandb_workspace.py runs/<name> --out report/ --entity ENTITY --project chrono-membench
    python analysis/wandb_workspace.py runs/<name> --out report/ --entity ENTITY --project chrono-membench --save

The layout is read off a run's logged keys (its hook points, time buckets, probe columns), so no panel is empty:
training · suite comparison (grouped by config run.ablation: mean, stddev band over seeds) · SAE quality per hook ·
chrono signals per hook (purity excess over its null, drift against the seed floor) · memorisation · the
interactive plotly panels the trainer logs (panels/...). Without --save it writes the workspace's spec
(`wandb_workspace.json`, what the server would store) and touches no network; --save needs a login and the
runs synced (`wandb sync runs/*/wandb/offline-run-*`), and prints the workspace's URL.
"""

from __future__ import annotations

import json
from pathlib import Path

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from common import Run, load_run, parse_args  # noqa: F401 (load_run: for the tests)

GROUP_BY = "run.ablation"  # the config key a suite's arms differ in; seeds within an arm are averaged
SUITE_KEYS = ("val/loss", "sae/{hook}/ce_recovered", "chrono/{hook}/temporal_purity_excess",
              "chrono/{hook}/hungarian_mcs", "mem/canary_exposure/16")


def hook_points(run: Run) -> list[str]:
    return sorted({k.split("/")[1] for k in run.keys("sae/") if k.count("/") == 2})


def line(run: Run, title: str, keys: list[str], **kw) -> wr.LinePlot | None:
    present = [k for k in keys if k in run.keys()]
    return wr.LinePlot(title=title, x="Step", y=present, **kw) if present else None


def section(name: str, panels: list, is_open: bool = False) -> ws.Section | None:
    panels = [p for p in panels if p is not None]
    return ws.Section(name=name, panels=panels, is_open=is_open) if panels else None


def build_workspace(run: Run, entity: str, project: str, name: str) -> ws.Workspace:
    hooks = hook_points(run)
    keys = run.keys()
    grouped = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}
    sections = [
        section("training", [line(run, k, [k]) for k in ("train/loss", "val/loss", "val/ppl", "train/lr",
                                                       "train/grad_norm", "train/tokens_per_s", "train/mfu",
                                                       "train/data_wait_frac")], is_open=True),
        section("suite comparison (runs grouped by run.ablation: mean ± stddev over seeds)",
                [line(run, k, [k], **grouped) for k in dict.fromkeys(s.format(hook=h) for s in SUITE_KEYS for h in hooks)]),
    ]
    for hook in hooks:
        sae = [f"sae/{hook}/{m}" for m in ("fve", "l0", "dead_frac", "ce_recovered", "kl_div_score", "masked_frac")]
        sections.append(section(f"SAE {hook}", [line(run, k.split("/")[-1], [k]) for k in sae]))
        c = f"chrono/{hook}"
        sections.append(section(f"chrono {hook}", [
            line(run, "temporal purity: observed, null", [f"{c}/temporal_purity", f"{c}/temporal_purity_null"]),
            line(run, "purity excess over the null", [f"{c}/temporal_purity_excess", f"{c}/source_purity_excess"]),
            line(run, "drift (Hungarian-matched cosine) and its floors",
                 [f"{c}/hungarian_mcs", f"{c}/hungarian_mcs_seed_baseline", f"{c}/cross_seed_mcs"]),
            line(run, "alignment share of the SAE loss", [f"{c}/alignment_share"]),
            line(run, "memorisation latents: max AUROC vs null",
                 [f"{c}/memorisation_latents_auc_max", f"{c}/memorisation_latents_auc_max_null"]),
        ]))
    mem = sorted(k for k in keys if k.startswith("mem/") and not k.endswith(("_lo", "_hi")))
    by_kind: dict[str, list[str]] = {}
    for k in mem:
        by_kind.setdefault("/".join(k.split("/")[:2]), []).append(k)
    sections.append(section("memorisation", [line(run, kind, ks) for kind, ks in by_kind.items()]))
    media = sorted({k for r in run.metrics for k, v in r.items() if k.startswith("panels/")}) or \
        ["panels/memorisation", "panels/drift", *(f"panels/purity/{h}" for h in hooks)]
    sections.append(section("plotly panels (logged at each eval)",
                            [wr.MediaBrowser(title=k, media_keys=[k]) for k in media]))
    return ws.Workspace(entity=entity, project=project, name=name, sections=[s for s in sections if s is not None],
                        runset_settings=ws.RunsetSettings(groupby=[ws.Config(GROUP_BY)]))


def spec(workspace: ws.Workspace) -> dict:
    """What the server stores for the workspace (built offline)."""
    return json.loads(workspace._to_model().model_dump_json())


def main() -> None:
    def extra(parser):
        parser.add_argument("--entity", required=True)
        parser.add_argument("--project", default="chrono-membench")
        parser.add_argument("--name", default="chrono-membench")
        parser.add_argument("--save", action="store_true", help="save it to the wandb server (network, login)")

    args = parse_args(__doc__, extra)
    workspace = build_workspace(args.loaded[0], args.entity, args.project, args.name)
    path = Path(args.out) / "wandb_workspace.json"
    path.write_text(json.dumps(spec(workspace), indent=1))
    n_panels = sum(len(s.panels) for s in workspace.sections)
    print(f"{path}: {len(workspace.sections)} sections, {n_panels} panels")
    if args.save:
        workspace.save()
        print(f"saved: {workspace.url}")


if __name__ == "__main__":
    main()
