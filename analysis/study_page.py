"""A run's results page, regenerated from the run alone: <out>/<name>.md with the command, the measured wall time and
machine (the run's sessions.jsonl), the time-claims at the last eval as a table of verdicts, the figures (PNG where
kaleido can draw, HTML always) under <out>/<name>/, and the closing summary as run.py printed it.

    python analysis/study_page.py runs/<study run>                       # docs/study.md and docs/study/
    python analysis/study_page.py runs/<run> --out pages/ --name demo
    python analysis/study_page.py runs/<study run> --frozen runs/<its frozen_lm twin>

With --frozen, the table gains the twin's column: the same preset and seeds with `--ablation frozen_lm` (the LM never
changes; same data, probe set, SAEs and evals). A time-claim must be about what training did, so a claim detected on
the trained LM must not be detected on its frozen twin; where it is, the claim reads the probe set's labelling or
content, and the page says so.

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


# what a frozen-LM twin may differ in: its name and place, and the switches --ablation frozen_lm sets
TWIN_MAY_DIFFER = {"run.name", "run.out_dir", "run.ablation", *(f"train.{k}" for k in ("lr", "muon_lr")), "logging"}


def twin_problem(run: RunDir, twin: RunDir) -> str | None:
    """Why `twin` is not `run`'s frozen-LM twin (one line), or None."""
    def flat(config: dict) -> dict:
        return {f"{section}.{key}": value for section, values in config.items() if section not in TWIN_MAY_DIFFER
                for key, value in (values.items() if isinstance(values, dict) else [("", values)])}

    a, b = flat(read_yaml(run.config)), flat(read_yaml(twin.config))
    if b.get("run.ablation") != "frozen_lm":
        return f"--frozen: {twin.root} is not a frozen-LM run (its run.ablation is {b.get('run.ablation')!r})"
    differ = sorted(k for k in a.keys() | b.keys() if k not in TWIN_MAY_DIFFER and a.get(k) != b.get(k))
    if differ:
        return (f"--frozen: {twin.root} differs from {run.root} in {', '.join(differ[:5])}"
                f"{' …' if len(differ) > 5 else ''}: a twin differs only in its ablation")
    return None


def verdict_table(run: RunDir, twin: RunDir | None) -> list[str]:
    """The claims' table; with a frozen-LM twin, its measured value and verdict beside each claim, and a line on
    the claims detected on both."""
    rows = claims(run.root)
    if twin is None:
        return ["| claim | measured | verdict |", "|---|---|---|", *[f"| {c} | {m} | {v} |" for c, m, v in rows]]
    frozen = {c: (m, v) for c, m, v in claims(twin.root)}
    lines = ["| claim | measured | verdict | frozen-LM twin | its verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {m} | {v} | {frozen.get(c, ('–', 'not measured'))[0]} | "
              f"{frozen.get(c, ('–', 'not measured'))[1]} |" for c, m, v in rows]
    detected = [c for c, _, v in rows if v.startswith("detected") and not c.startswith("blind baseline")]
    both = [c for c in detected if frozen.get(c, ("", ""))[1].startswith("detected")]
    lines += ["", f"Frozen-LM twin: `{twin.root}` (`--ablation frozen_lm`: the same data, probe set, SAEs and evals "
              f"on an LM that never changes). Of the {len(detected)} claims detected on the trained LM, "
              f"{len(detected) - len(both)} are not detected on the twin"
              + (f"; detected on both, so read from the probe set's labelling or content rather than from "
                 f"training: {'; '.join(both)}." if both else ": each is about what training did.")]
    return lines


def command(run: RunDir) -> str:
    """The command that made the run, from its first recorded session."""
    sessions, config = run.read_sessions(), read_yaml(run.config)
    made = "`python experiments/run.py " + " ".join(sessions[0]["argv"]) + "`"
    if sessions[0]["resumed"]:  # the session that started the run left no record: its preset and name
        made = (f"`python experiments/run.py --preset {config['run']['preset']} run.name={config['run']['name']}` "
                f"(its preset and name: the session that started it left no record), then {made}")
    return made


def page(run: RunDir, name: str, figures: Path, twin: RunDir | None = None) -> str:
    config = read_yaml(run.config)
    lines = [f"# {name}: {config['run']['preset']} — what the run decides about time", "",
             f"Written by `python analysis/study_page.py {run.root}"
             f"{f' --frozen {twin.root}' if twin else ''}` from the run{' and its twin' if twin else ''} alone (do not "
             f"edit by hand). The preset's comment (experiments/configs/{config['run']['preset']}.yaml) gives the "
             f"resolution it was sized for; docs/metrics.md what each number means.", "",
             f"- **Command**: {command(run)}", f"- **Cost**: {cost(run.read_sessions())}"]
    if twin is not None:
        lines += [f"- **Its frozen-LM twin**: {command(twin)}; {cost(twin.read_sessions())}"]
    lines += ["",
             "## Time-claims at the last eval (95 % intervals)", "", *verdict_table(run, twin)]
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
    parser.add_argument("--frozen", type=Path, default=None, metavar="RUN",
                        help="the run's frozen-LM twin (--ablation frozen_lm, same preset and seeds): its verdicts "
                             "beside the run's")
    args = parser.parse_args(argv)
    run, twin = RunDir(args.run), RunDir(args.frozen) if args.frozen else None
    for flag, r in (("run", run), ("--frozen", twin)):
        if r is None:
            continue
        if not r.config.exists():
            print(f"error: {flag}: {r.root} is not a run directory (no config.yaml)", file=sys.stderr)
            return 2
        if not r.read_sessions():
            print(f"error: {flag}: {r.root} has no finished session in sessions.jsonl (it has not ended, or it ran "
                  f"before run.py kept that record): finish it with `python experiments/run.py --resume {r.root}`",
                  file=sys.stderr)
            return 2
    if twin is not None and (why := twin_problem(run, twin)):
        print(f"error: {why}", file=sys.stderr)
        return 2
    figures = args.out / args.name
    with tempfile.TemporaryDirectory() as report:
        proc = subprocess.run([sys.executable, str(HERE / "report.py"), str(args.run), "--out", report,
                               "--docs", str(figures)], text=True)
        if proc.returncode != 0:
            return proc.returncode
    sae_quality(run, figures)
    (args.out / f"{args.name}.md").write_text(page(run, args.name, figures, twin))
    print(args.out / f"{args.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
