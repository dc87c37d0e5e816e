"""A run's results page, regenerated from the run alone: <out>/<name>.md with the command, the measured wall time and
machine (the run's sessions.jsonl), the time-claims at the last eval as a table of verdicts, the figures (PNG where
kaleido can draw, HTML always) under <out>/<name>/, and the closing summary as run.py printed it.

    python analysis/study_page.py runs/<study run>                       # docs/study.md and docs/study/
    python analysis/study_page.py runs/<run> --out pages/ --name demo

The figures are analysis/report.py's (report.py --docs into <out>/<name>/): forgetting curves, purity and
time-selective latents over the evals with their nulls, memorisation and canary exposure by repetitions, the SAE's
quality through time, the blind baselines, the training curves. Run it after any change that alters a figure or a
verdict, look at the figures, and commit the page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import load_run, png_works
from training_curves import curves_figure

from chrono_membench import metric_keys as K
from chrono_membench.config import read_yaml
from chrono_membench.run_dir import RunDir
from studies.summary import claims, headline

HERE = Path(__file__).resolve().parent

# (figure in <out>/<name>/, what it shows), in the page's order
FIGURES = [("forgetting", "Forgetting curves: each bucket's memorisation against the steps since it was seen"),
           ("memorisation", "Memorisation by time bucket and canary exposure by repetitions"),
           ("purity_curves", "Temporal and source purity over the evals, beside their permutation nulls"),
           ("purity_heatmaps", "Purity matrices at the last eval, beside the null"),
           ("sae_quality", "The SAE's quality through time: FVE, CE loss recovered, L0, dead latents; and the previous "
                           "checkpoint's SAE on the current model (what the LM's change costs an SAE trained before it)"),
           ("feature_trajectories", "The SAE's features through time: drift to the first and the previous checkpoint, "
                                    "MMCS, self-match"),
           ("blind_baselines", "Blind baselines: a text-only classifier, which must sit at chance"),
           ("training_curves", "Training curves")]


def cost(sessions: list[dict]) -> str:
    wall, evals = sum(s["wall_s"] for s in sessions), sum(s["eval_s"] for s in sessions)
    machines = sorted({s["machine"] for s in sessions})
    unrecorded = " (its first recorded session resumed: the one before it ended in a kill or a fault)" \
        if sessions[0]["resumed"] else ""
    return (f"{wall / 60:.1f} min of wall time over {len(sessions)} session{'s' * (len(sessions) > 1)} (evals "
            f"{evals / 60:.1f} min, {evals / max(wall, 1e-9):.0%}), {sessions[-1]['steps']} steps, on "
            f"{' and '.join(machines)}; sessions that ended in a fault or a kill are not counted{unrecorded}")


def sae_quality(run: RunDir, figures: Path) -> None:
    """The SAE panel's numbers at every eval, per hook, as <figures>/sae_quality.{html,png}."""
    loaded = load_run(run.root)
    hooks = sorted({K.hook_of(k) for k in loaded.keys("sae/")} - {None})
    keys = [k for h in hooks for k in (K.sae(h, "eval_fve"), K.sae(h, "ce_recovered"), K.sae(h, "eval_l0"),
                                       K.sae(h, "dead_frac"), K.chrono(h, "previous_sae_fve"),
                                       K.chrono(h, "previous_sae_ce_recovered"))]
    if keys:
        fig = curves_figure([loaded], keys, "The SAE's quality through time")
        fig.write_html(figures / "sae_quality.html", include_plotlyjs="cdn")
        if png_works():
            fig.write_image(figures / "sae_quality.png", width=1200, height=fig.layout.height or 700)


def page(run: RunDir, name: str, figures: Path) -> str:
    sessions = run.read_sessions()
    config = read_yaml(run.config)
    command = "`python experiments/run.py " + " ".join(sessions[0]["argv"]) + "`"
    if sessions[0]["resumed"]:  # the session that started the run left no record: its preset and name
        command = (f"`python experiments/run.py --preset {config['run']['preset']} run.name={config['run']['name']}` "
                   f"(its preset and name: the session that started it left no record), then {command}")
    lines = [f"# {name}: {config['run']['preset']} — what the run decides about time", "",
             f"Written by `python analysis/study_page.py {run.root}` from the run alone (do not edit by hand). The "
             f"preset's comment (experiments/configs/{config['run']['preset']}.yaml) gives the resolution it was "
             f"sized for; docs/metrics.md what each number means.", "",
             f"- **Command**: {command}", f"- **Cost**: {cost(sessions)}", "",
             "## Time-claims at the last eval (95 % intervals)", "", "| claim | measured | verdict |", "|---|---|---|"]
    lines += [f"| {c} | {m} | {v} |" for c, m, v in claims(run.root)]
    lines += ["", "## Figures", ""]
    for stem, what in FIGURES:
        png, html = figures / f"{stem}.png", figures / f"{stem}.html"
        if html.exists():
            rel = lambda p: p.relative_to(figures.parent).as_posix()  # noqa: E731
            lines += [f"**{what}** ([interactive]({rel(html)}))", ""]
            lines += [f"![{stem}]({rel(png)})", ""] if png.exists() else ["(no PNG: kaleido found no Chromium)", ""]
    lines += ["## The closing summary", "", "```text", *headline(run.root), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs", help="folder of the page (default docs/)")
    parser.add_argument("--name", default="study", help="the page's name: <out>/<name>.md, figures in <out>/<name>/")
    args = parser.parse_args(argv)
    run = RunDir(args.run)
    if not run.config.exists():
        print(f"error: run: {args.run} is not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    if not run.read_sessions():
        print(f"error: run: {args.run} has no finished session in sessions.jsonl (it has not ended, or it ran before "
              f"run.py kept that record): finish it with `python experiments/run.py --resume {args.run}`",
              file=sys.stderr)
        return 2
    figures = args.out / args.name
    with tempfile.TemporaryDirectory() as report:
        proc = subprocess.run([sys.executable, str(HERE / "report.py"), str(args.run), "--out", report,
                               "--docs", str(figures)], text=True)
        if proc.returncode != 0:
            return proc.returncode
    sae_quality(run, figures)
    (args.out / f"{args.name}.md").write_text(page(run, args.name, figures))
    print(args.out / f"{args.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
