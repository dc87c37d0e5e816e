"""Shared by the analysis scripts: read runs (a run directory, or a wandb run through the API), save figures.

Every script is `python analysis/<name>.py RUN_DIR [RUN_DIR ...] --out DIR [--wandb ENTITY/PROJECT/RUN_ID]`.
Figures are self-contained HTML, plus PNG when kaleido can render (it needs a Chromium; without one this
says so once and writes HTML only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chrono_membench.logging import run_records, split_run
from chrono_membench.run_dir import RunDir


@dataclass
class Run:
    name: str
    metrics: list[dict]
    config: dict
    directory: Path | None = None  # artifacts live here; None for a run read from wandb
    label: str = field(default="")

    def series(self, key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in self.metrics if isinstance(r.get(key), (int, float))]
        return [p[0] for p in pts], [p[1] for p in pts]

    def keys(self, prefix: str = "") -> list[str]:
        return sorted({k for r in self.metrics for k in r if k.startswith(prefix) and k != "step"})

    def final(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.metrics:
            out.update({k: v for k, v in r.items() if isinstance(v, (int, float)) and k != "step"})
        return out

    def at(self, step: int) -> dict[str, float]:
        """Every numeric value logged at `step`."""
        out: dict[str, float] = {}
        for r in (r for r in self.metrics if r["step"] == step):
            out.update({k: v for k, v in r.items() if isinstance(v, (int, float)) and k != "step"})
        return out

    def artifact_steps(self) -> list[Path]:
        root = (self.directory or Path("/nonexistent")) / "artifacts"
        return sorted(p for p in root.glob("step_*") if p.is_dir()) if root.exists() else []


def load_run(ref: str | Path) -> Run:
    """A run directory, or `<directory>#<SAE variant>`: the run as that variant of its SAEs saw it (labelled by the
    variant's name; its artifacts are the run's)."""
    path, variant = split_run(ref)
    if not RunDir(path).metrics.exists():
        raise SystemExit(f"error: {path} is not a run directory (no metrics.jsonl)")
    config = yaml.safe_load(RunDir(path).config.read_text()) if RunDir(path).config.exists() else {}
    label = variant or config.get("run", {}).get("ablation") or path.name
    return Run(path.name + (f"#{variant}" if variant else ""), run_records(ref), config, path, label)


def load_wandb_run(spec: str) -> Run:
    """ENTITY/PROJECT/RUN_ID through the wandb API (needs network and a login)."""
    import wandb

    run = wandb.Api().run(spec)
    metrics = [{"step": row.get("_step", 0), **{k: v for k, v in row.items() if not k.startswith("_")}}
               for row in run.scan_history()]
    return Run(run.name, metrics, dict(run.config), None, run.job_type or run.name)


def parse_args(description: str, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="*", help="run directories (runs/<name>)")
    parser.add_argument("--wandb", action="append", default=[], metavar="ENTITY/PROJECT/RUN_ID")
    parser.add_argument("--out", type=Path, required=True)
    if extra:
        extra(parser)
    args = parser.parse_args()
    if not args.runs and not args.wandb:
        parser.error("give at least one RUN_DIR or --wandb ENTITY/PROJECT/RUN_ID")
    args.out.mkdir(parents=True, exist_ok=True)
    args.loaded = [load_run(p) for p in args.runs] + [load_wandb_run(s) for s in args.wandb]
    labels = [r.label for r in args.loaded]
    for r in args.loaded:  # two runs of the same ablation: fall back to directory names
        if labels.count(r.label) > 1:
            r.label = r.name
    return args


_png_state = {"checked": False, "works": False}


def png_works() -> bool:
    if os.environ.get("CHRONO_MEMBENCH_PNG", "1") == "0":  # the tests: HTML is what they check
        return False
    if not _png_state["checked"]:
        _png_state["checked"] = True
        try:
            import atexit
            import warnings

            import kaleido
            import plotly.graph_objects as go

            # one Chromium kept for the process (kaleido's sync server): 0.26 s a PNG after the first, where each
            # write_image starting its own took 3 s here
            kaleido.start_sync_server(silence_warnings=True)
            atexit.register(kaleido.stop_sync_server, silence_warnings=True)
            warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server")
            go.Figure().to_image(format="png")
            _png_state["works"] = True
        except Exception as e:
            why = str(e).strip().splitlines()[0][:100]
            print(f"note: PNG export unavailable ({type(e).__name__}: {why}); writing HTML only. "
                  "Install kaleido and a Chromium (Debian: apt-get install chromium) for PNGs.", file=sys.stderr)
    return _png_state["works"]


def save_figure(fig, out: Path, name: str) -> Path:
    """Self-contained HTML (plotly.js inlined); the figure itself as plotly JSON (`<name>.plotly.json`, reload it
    with `plotly.io.read_json`: what tests read, since the HTML's encoding of traces changes between plotly
    releases); PNG where kaleido can render. Returns the HTML path."""
    html = out / f"{name}.html"
    fig.write_html(html, include_plotlyjs=True, full_html=True)
    fig.write_json(out / f"{name}.plotly.json")
    if png_works():
        fig.write_image(out / f"{name}.png", width=fig.layout.width or 1200, height=fig.layout.height or 700)
    return html


def write_json(out: Path, name: str, data) -> Path:
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path
