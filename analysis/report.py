"""Every figure for one run or an ablation suite, and an index.html that links them.

    python analysis/report.py runs/<name> --out report/
    python analysis/report.py runs/<suite>-full runs/<suite>-no_dropout ... --out report/

With latent records in a run's artifacts, its feature dashboards (feature_dashboard.py) are linked too; the
sparse-probing figure (sparse_probing.py, minutes per checkpoint) when it is already in --out.
"""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

from common import parse_args
from chrono_membench.run_dir import RunDir
from studies.summary import headline

HERE = Path(__file__).resolve().parent
SCRIPTS = ["training_curves", "feature_trajectories", "purity_heatmaps", "memorisation", "registered_metrics"]


def label(path: Path) -> str:
    """A figure's stem, or for a dashboard (…/dashboard_<hook>/index.html) its run and hook."""
    return f"{path.parts[0].removeprefix('dashboards_')} · {path.parent.name}" if path.name == "index.html" else path.stem


def main() -> None:
    args = parse_args(__doc__)
    sources = [*args.runs, *[a for spec in args.wandb for a in ("--wandb", spec)]]
    scripts = SCRIPTS + (["compare_ablations"] if len(args.loaded) > 1 else [])
    sections = []
    for script in scripts:
        before = set(args.out.glob("*.html"))
        proc = subprocess.run([sys.executable, str(HERE / f"{script}.py"), *sources, "--out", str(args.out)],
                              capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"error: {script}.py failed (exit {proc.returncode})")
        made = sorted(set(args.out.glob("*.html")) - before - {args.out / "index.html"})
        sections.append((script, [p.relative_to(args.out) for p in made]))
    # the feature dashboards: one page per run with latent records and SAE (in its own folder, with its data)
    dashboards = []
    for run in (r for r in args.loaded if r.directory is not None and RunDir(r.directory).artifact_steps("latents")):
        proc = subprocess.run([sys.executable, str(HERE / "feature_dashboard.py"), str(run.directory), "--out",
                               str(args.out / f"dashboards_{run.name}")], capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"error: feature_dashboard.py failed (exit {proc.returncode})")
        dashboards += [Path(line).resolve() for line in proc.stdout.split()]
    sections.append(("feature_dashboard", [p.relative_to(args.out.resolve()) for p in dashboards]))
    # sparse probing takes minutes per checkpoint on a CPU, so the report links it when it is there, never runs it
    probing = [Path("sparse_probing.html")] if (args.out / "sparse_probing.html").exists() else []
    sections.append(("sparse_probing", probing))
    empty = {"sparse_probing": "not computed: <code>python analysis/sparse_probing.py RUN... --out "
             + html.escape(str(args.out)) + "</code>, then this report again"}  # what an empty section says
    items = "\n".join(
        f"<h2>{html.escape(script.replace('_', ' '))}</h2><ul>"
        + ("".join(f'<li><a href="{p.as_posix()}">{html.escape(label(p))}</a></li>' for p in made)
           or f"<li>{empty.get(script, 'nothing to show')}</li>")
        + "</ul>" for script, made in sections)
    runs = ", ".join(html.escape(r.name) for r in args.loaded)
    # each run's closing summary, with beside every time-claim what the run could have seen (chrono/resolution.py)
    summaries = "".join(f"<h2>{html.escape(r.name)}: results at the last eval</h2><pre>"
                        + html.escape("\n".join(headline(r.directory))) + "</pre>"
                        for r in args.loaded if r.directory is not None)
    (args.out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>chrono-membench report</title></head>"
        f"<body style='font-family:sans-serif;max-width:900px;margin:2em auto'><h1>chrono-membench report</h1>"
        f"<p>Runs: {runs}</p>{summaries}{items}</body></html>")
    print(args.out / "index.html")


if __name__ == "__main__":
    main()
