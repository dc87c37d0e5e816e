"""Every figure for one run or an ablation suite, and an index.html that shows them (thumbnails where PNGs could be
made) beside each run's closing summary.

    python analysis/report.py runs/<name> --out report/
    python analysis/report.py runs/<suite>-full runs/<suite>-no_dropout ... --out report/
    python analysis/report.py runs/<demo run> --out report/ --docs     # also refresh the figures in docs/

--docs copies the figures docs/ shows (DOCS_FIGURES) from the report into docs/ (or the folder given): each as PNG
(kaleido with a Chromium; the feature dashboard as a Chromium screenshot) and as a small HTML that loads plotly.js
from its CDN. Run it on a demo run after a change that alters a figure, look at each, and commit them.

With latent records in a run's artifacts, its feature dashboards (feature_dashboard.py) are linked too; the
sparse-probing figure (sparse_probing.py, minutes per checkpoint) when it is already in --out.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import plotly.io

from common import png_works, parse_args
from chrono_membench.run_dir import RunDir
from studies.summary import headline

HERE = Path(__file__).resolve().parent
SCRIPTS = ["training_curves", "feature_trajectories", "purity_heatmaps", "memorisation", "forgetting",
           "registered_metrics", "crosscoder"]
# docs/<name>: the report figure it is (a glob over the report's files, first match), for one demo run
DOCS_FIGURES = {"training_curves": "training_curves", "feature_trajectories": "feature_trajectories_*",
                "purity_heatmaps": "purity_heatmaps_*", "purity_curves": "purity_curves_*",
                "memorisation": "memorisation_*", "forgetting": "forgetting_*", "blind_baselines": "metric_blind_*"}
ROOT = HERE.parent


def screenshot(page: Path, png: Path) -> bool:
    """A PNG of an HTML page by a headless Chromium, where one is installed."""
    browser = shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chromium-browser")
    if not browser:
        return False
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={png}", "--window-size=1400,1000", "--virtual-time-budget=5000",
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and png.exists()


def write_docs(report: Path, docs: Path, dashboards: list[Path]) -> list[Path]:
    """The figures docs/ shows, from this report: PNG where one was made, and HTML with plotly.js from its CDN."""
    docs.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pattern in DOCS_FIGURES.items():
        found = sorted(report.glob(f"{pattern}.plotly.json"))
        if not found:
            print(f"note: docs/{name}: the report has no {pattern} figure", file=sys.stderr)
            continue
        fig = plotly.io.read_json(found[0])
        fig.write_html(docs / f"{name}.html", include_plotlyjs="cdn")
        written.append(docs / f"{name}.html")
        png = found[0].with_name(found[0].name.removesuffix(".plotly.json") + ".png")
        if png.exists():
            shutil.copyfile(png, docs / f"{name}.png")
            written.append(docs / f"{name}.png")
    if dashboards and screenshot(dashboards[0], docs / "feature_dashboard.png"):
        written.append(docs / "feature_dashboard.png")
    return written


def label(path: Path) -> str:
    """A figure's stem, or for a dashboard (…/dashboard_<hook>/index.html) its run and hook."""
    return f"{path.parts[0].removeprefix('dashboards_')} · {path.parent.name}" if path.name == "index.html" else path.stem


def thumbnail(out: Path, page: Path) -> str:
    png = (out / page).with_suffix(".png")
    return f'<img src="{png.relative_to(out).as_posix()}" width="320" style="display:block">' if png.exists() else ""


def main() -> None:
    def extra(p):
        p.add_argument("--docs", nargs="?", const=ROOT / "docs", type=Path, default=None, metavar="DIR",
                       help="also copy the figures docs/ shows into DIR (default: docs/)")
    args = parse_args(__doc__, extra)
    env = dict(os.environ)
    if not png_works():  # said once, here; the scripts then write HTML without trying
        env["CHRONO_MEMBENCH_PNG"] = "0"
    sources = [*args.runs, *[a for spec in args.wandb for a in ("--wandb", spec)]]
    scripts = SCRIPTS + (["compare_ablations"] if len(args.loaded) > 1 else [])
    sections = []
    for script in scripts:
        before = set(args.out.glob("*.html"))
        proc = subprocess.run([sys.executable, str(HERE / f"{script}.py"), *sources, "--out", str(args.out)],
                              capture_output=True, text=True, env=env)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"error: {script}.py failed (exit {proc.returncode})")
        made = sorted(set(args.out.glob("*.html")) - before - {args.out / "index.html"})
        sections.append((script, [p.relative_to(args.out) for p in made]))
    # the feature dashboards: one page per run with latent records and SAE (in its own folder, with its data)
    dashboards = []
    for run in (r for r in args.loaded if r.directory is not None and RunDir(r.directory).artifact_steps("latents")):
        proc = subprocess.run([sys.executable, str(HERE / "feature_dashboard.py"), str(run.directory), "--out",
                               str(args.out / f"dashboards_{run.name}")], capture_output=True, text=True, env=env)
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
        + ("".join(f'<li><a href="{p.as_posix()}">{thumbnail(args.out, p)}{html.escape(label(p))}</a></li>'
                   for p in made)
           or f"<li>{empty.get(script, 'nothing to show')}</li>")
        + "</ul>" for script, made in sections)
    runs = ", ".join(html.escape(r.name) for r in args.loaded)
    # each run's closing summary, with beside every time-claim what the run could have seen (chrono/resolution.py)
    summaries = "".join(f"<h2>{html.escape(r.name)}: results at the last eval</h2><pre style='white-space:pre-wrap'>"
                        + html.escape("\n".join(headline(r.directory))) + "</pre>"
                        for r in args.loaded if r.directory is not None)
    (args.out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>chrono-membench report</title></head>"
        f"<body style='font-family:sans-serif;max-width:1000px;margin:2em auto'><h1>chrono-membench report</h1>"
        f"<p>Runs: {runs}</p>{summaries}{items}</body></html>")
    print(args.out / "index.html")
    if args.docs is not None:
        for path in write_docs(args.out, args.docs, dashboards):
            print(path)


if __name__ == "__main__":
    main()
