"""Feature dashboards through training time: one self-contained page per run and SAE, opened offline.

    python analysis/feature_dashboard.py runs/<name> --out report/ [--hook H] [--max-latents 2000] [--latent 7 ...]

Reads each checkpoint's latents_<hook>.safetensors and windows.json (chrono_membench/latent_records.py) and the
decoder rows of features_<hook>.safetensors, and writes report/dashboard_<hook>/index.html: a latent picker (by
id, drift, temporal purity, density, memorisation link: the within-bucket AUROC of the last eval's
memorisation_latents_<hook>.json, its top 20), the latents born and died between checkpoints, and for the chosen latent one
column per checkpoint — its top probe contexts (one per window) with each scored token shaded by the latent's activation (the
32-token training context before them in grey), its activation histogram, the tokens its decoder direction
promotes and suppresses, its time-bucket and source profile, and its decoder cosine to the previous checkpoint.
Panel design after SAE-Vis / sae-dashboard (top contexts, histogram, logit tables); plotly's JS is inlined once
and per-latent data sits in blocks of BLOCK latents under data/, loaded on demand (works from file://), so a run
with 18k latents and 10 checkpoints stays a small page.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from tqdm import tqdm

from chrono_membench.config import config_from_dict
from chrono_membench.data.sources import SOURCE_NAMES
from chrono_membench.hooks import file_name
from chrono_membench.model import load_tokenizer
from chrono_membench.run_dir import RunDir

BLOCK = 256
PAGE = Path(__file__).with_name("feature_dashboard.html")  # the page's HTML and JS; data is filled in
CONTEXT_BEFORE = 12  # prefix tokens shown before the scored half


def run_tokenizer(run: Path):
    """The tokenizer of the run's model, from its config.yaml."""
    return load_tokenizer(config_from_dict(yaml.safe_load(RunDir(run).config.read_text())).model)


def read_checkpoints(run: Path, hook: str) -> list[dict]:
    """Per checkpoint with latent records: step, records (tensors), columns, windows, unit decoder rows."""
    out, run_dir = [], RunDir(run)
    for step, path in run_dir.artifact_steps("latents", hook):
        with safe_open(str(path), "pt") as f:
            records = {k: f.get_tensor(k) for k in f.keys()}
            columns = json.loads(f.metadata()["columns"])
        decoder = None
        features = run_dir.artifact(step, "features", hook)
        if features.exists():
            with safe_open(str(features), "pt") as f:
                decoder = f.get_tensor("decoder_unit").float()
        out.append({"step": step, "records": records, "columns": columns,
                    "windows": json.loads(run_dir.artifact(step, "windows").read_text()), "decoder": decoder})
    return out


def summary(checkpoints: list[dict]) -> dict[str, torch.Tensor]:
    """Per latent: density at the last checkpoint, max density, temporal purity (max share of its bucket profile
    at the last checkpoint), drift (1 − cosine of its decoder row, first → last checkpoint)."""
    last = checkpoints[-1]["records"]
    density = torch.stack([c["records"]["density"] for c in checkpoints])
    profile = last["bucket_profile"].float()
    purity = profile.max(-1).values / profile.sum(-1).clamp_min(1e-12)
    decoders = [c["decoder"] for c in checkpoints if c["decoder"] is not None]
    drift = 1 - (decoders[0] * decoders[-1]).sum(-1) if len(decoders) > 1 else torch.zeros(len(purity))
    return {"density": density[-1], "max_density": density.max(0).values, "purity": purity, "drift": drift,
            "alive": density > 0}


def latent_data(i: int, checkpoints: list[dict], tokens_text) -> list[dict]:
    """The latent's panel data, one entry per checkpoint (what the page draws)."""
    out, previous = [], None
    for c in checkpoints:
        r, windows = c["records"], c["windows"]
        contexts, shown = [], set()
        for j in range(r["top_act"].shape[1]):
            act = float(r["top_act"][i, j])
            if act <= 0:
                break
            if int(r["top_window"][i, j]) in shown:  # another token of a window already listed (its shading shows it)
                continue
            shown.add(int(r["top_window"][i, j]))
            w = windows[int(r["top_window"][i, j])]
            scored = r["top_ctx"][i, j].float().tolist()
            prefix = w["tokens"][len(w["tokens"]) - len(scored) - CONTEXT_BEFORE:len(w["tokens"]) - len(scored)]
            contexts.append({"act": round(act, 3), "uid": w["uid"], "column": w["column"], "source": w["source"],
                             "step": w["step"], "pos": int(r["top_pos"][i, j]),
                             "prefix": tokens_text(prefix), "scored": tokens_text(w["tokens"][-len(scored):]),
                             "scored_act": [round(a, 3) for a in scored]})
        cosine = None
        if c["decoder"] is not None and previous is not None:
            cosine = round(float(c["decoder"][i] @ previous[i]), 4)
        previous = c["decoder"] if c["decoder"] is not None else previous
        entry = {"step": c["step"], "density": float(r["density"][i]), "contexts": contexts, "cosine_prev": cosine,
                 "hist": r["hist"][i].tolist(), "columns": c["columns"],
                 "bucket_profile": [round(float(x), 4) for x in r["bucket_profile"][i]],
                 "source_profile": [round(float(x), 4) for x in r["source_profile"][i]]}
        if "logit_up" in r:
            entry["logit_up"] = list(zip(tokens_text(r["logit_up"][i].tolist()), r["logit_up_val"][i].float().tolist()))
            entry["logit_down"] = list(zip(tokens_text(r["logit_down"][i].tolist()),
                                           r["logit_down_val"][i].float().tolist()))
        out.append(entry)
    return out


def memorisation_link(run: Path, hook: str) -> tuple[int, dict[int, float]]:
    """(step, {latent: within-bucket AUROC}) from the last eval's memorisation-latent table (its top 20 latents by how
    well their prefix activation tells the top-decile memorised probe windows from the rest); (0, {}) if none."""
    tables = RunDir(run).artifact_steps("memorisation_latents", hook)
    if not tables:
        return 0, {}
    step, path = tables[-1]
    return step, {int(i): auc for i, auc in json.loads(path.read_text())["latents"]}


def births_and_deaths(alive: torch.Tensor, steps: list[int], chosen: set[int]) -> list[dict]:
    return [{"step": steps[c], "born": [i for i in (alive[c] & ~alive[c - 1]).nonzero().flatten().tolist() if i in chosen],
             "died": [i for i in (~alive[c] & alive[c - 1]).nonzero().flatten().tolist() if i in chosen]}
            for c in range(1, len(steps))]


def write_dashboard(run: Path, hook: str, out: Path, max_latents: int = 2000, extra: tuple[int, ...] = ()) -> Path:
    import plotly.offline

    checkpoints = read_checkpoints(run, hook)
    if not checkpoints:
        raise SystemExit(f"error: {run} has no latent records for {hook} (artifacts/step_*/latents_"
                         f"{file_name(hook)}.safetensors; runs before this version, or save_features=false)")
    tokenizer = run_tokenizer(run)

    @functools.cache
    def token_text(t: int) -> str:
        return tokenizer.decode([t])

    def tokens_text(ids):
        return [token_text(int(t)) for t in ids]
    s = summary(checkpoints)
    ever = s["alive"].any(0)
    ranked = sorted(ever.nonzero().flatten().tolist(), key=lambda i: -float(s["max_density"][i]))
    memorisation_step, memorisation_auc = memorisation_link(run, hook)
    chosen = sorted(set(ranked[:max_latents]) | set(extra) | set(memorisation_auc))
    directory = out / f"dashboard_{file_name(hook)}"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for block in tqdm(sorted({i // BLOCK for i in chosen}), desc=f"dashboard {hook}", unit="block"):
        data = {i: latent_data(i, checkpoints, tokens_text) for i in chosen if i // BLOCK == block}
        (directory / "data" / f"block_{block}.js").write_text(
            f"window.DASH = window.DASH || {{}}; Object.assign(window.DASH, {json.dumps(data)});")
    table = [{"id": i, "density": round(float(s["density"][i]), 5), "purity": round(float(s["purity"][i]), 3),
              "drift": round(float(s["drift"][i]), 4), "mem_auc": memorisation_auc.get(i)} for i in chosen]
    meta = {"run": run.name, "hook": hook, "steps": [c["step"] for c in checkpoints], "block": BLOCK, "table": table,
            "changes": births_and_deaths(s["alive"], [c["step"] for c in checkpoints], set(chosen)),
            "n_latents": len(s["density"]), "n_shown": len(chosen), "sources": list(SOURCE_NAMES),
            "memorisation_step": memorisation_step}
    page = PAGE.read_text().replace("__PLOTLY__", plotly.offline.get_plotlyjs()).replace("__META__", json.dumps(meta))
    page = page.replace("__TITLE__", html.escape(f"{run.name} · {hook}"))
    (directory / "index.html").write_text(page)
    return directory / "index.html"


def write_crosscoder_page(run: Path, hook: str, out: Path) -> Path | None:
    """dashboard_crosscoder_<hook>.html: the crosscoder's shown latents (every classed one and those leaning
    furthest from their null twin each way, chrono_membench/crosscoder.shown_latents) — r through the checkpoints
    beside the class threshold and the null twin's range, and at the last eval each one's class, r − r_null, decoder
    cosine, emergence step, Latent Scaling's ν and the probe windows it fires on most (strongest token in bold)."""
    import plotly.graph_objects as go

    found = RunDir(run).crosscoder_readings(hook)
    with_top = [(step, r) for step, r in found if r.get("top_windows")]
    if not with_top:
        return None
    step, last = with_top[-1]
    tokenizer = run_tokenizer(run)
    shown = [int(i) for i in last["top_windows"]]
    ft = {e["latent"]: e for e in last["ft_only"]}
    fig = go.Figure()
    steps = [s for s, _ in found]  # r − r_null: the twin shares the initialisation and tokens: the rest is the model
    fig.add_hline(y=0, line={"dash": "dash", "color": "black"},
                  annotation_text="an unchanged model (the twin trains identically: 0 exactly)")
    for i in shown:
        fig.add_trace(go.Scatter(x=steps, y=[r["relative_norm"][i] - r["relative_norm_null"][i] for _, r in found],
                                 mode="lines+markers", name=f"latent {i}", opacity=0.7, showlegend=False))
    fig.update_layout(title=f"r − r_null of the shown latents through the checkpoints ({hook}); a class needs r past "
                      f"{last['threshold']:.3f}", xaxis_title="step", yaxis_title="r − r_null", height=420)

    def context(e: dict) -> str:
        text = [html.escape(tokenizer.decode([t]).replace("\n", "⏎")) for t in e["tokens"]]
        text[e["at"]] = f"<b style='background:#fd8'>{text[e['at']]}</b>"
        return (f"<div class=ctx><span class=meta>{e['column']} · {e['source']} · step {e['step']} · "
                f"{e['act']:.3g}</span> …{''.join(text)}…</div>")

    def row(i: int) -> str:
        r, r_null = last["relative_norm"][i], last["relative_norm_null"][i]
        kind = "fine-tuned-only" if i in ft else "base-only" if i in last["base_only"] else "shared"
        e = ft.get(i, {})
        nu = " / ".join("—" if e.get(k) is None else f"{e[k]:.2f}" for k in ("nu_eps", "nu_rec"))
        born = e.get("emergence_step", "—")
        windows = "".join(context(w) for w in last["top_windows"][str(i)]) or "<i>fires on no probe window</i>"
        return (f"<tr><td>{i}</td><td>{kind}</td><td>{r:.4f}</td><td>{r - r_null:+.4f}</td>"
                f"<td>{last['cosine'][i]:.3f}</td><td>{born}</td><td>{nu}</td><td>{windows}</td></tr>")

    counts = f"{len(last['ft_only'])} fine-tuned-only, {len(last['base_only'])} base-only of {len(last['relative_norm'])}"
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(run.name)} · crosscoder {html.escape(hook)}</title>"
            "<style>body{font-family:sans-serif;margin:1em 2em}td,th{border-bottom:1px solid #ddd;padding:4px;"
            "vertical-align:top;text-align:left}.ctx{font-family:monospace;white-space:pre-wrap;margin:2px 0}"
            ".meta{color:#777}</style>"
            f"<h2>{html.escape(run.name)} · crosscoder at {html.escape(hook)}</h2>"
            f"<p>Step-0 model vs the model at step {step} (the last eval with readings): {counts}; class threshold "
            f"{last['threshold']:.3f} (max of the floor and the null twin's most extreme latent). Shown: every classed "
            "latent and the 16 leaning furthest from their null twin (same initialisation and tokens, step-0 "
            "activations on both sides) each way; r − r_null is what the model's change did to the latent.</p>"
            + fig.to_html(full_html=False, include_plotlyjs=True)
            + "<table><tr><th>latent</th><th>class</th><th>r</th><th>r − r_null</th><th>decoder cosine</th>"
            "<th>emerged</th><th>ν^ε / ν^r</th><th>probe windows it fires on most</th></tr>"
            + "".join(row(i) for i in shown) + "</table>")
    path = out / f"dashboard_crosscoder_{file_name(hook)}.html"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hook", action="append", help="SAE hook point(s); default: every one with records")
    parser.add_argument("--max-latents", type=int, default=2000, help="latents with data (the densest ever alive)")
    parser.add_argument("--latent", type=int, action="append", default=[], help="always include this latent")
    args = parser.parse_args(argv)
    run_dir = RunDir(args.run)
    hooks = args.hook or sorted({safe_open(str(p), "pt").metadata()["hook"] for _, p in run_dir.artifact_steps("latents")})
    crosscoders = sorted({r["hook"] for _, r in run_dir.crosscoder_readings()})
    if not hooks and not crosscoders:
        raise SystemExit(f"error: {args.run} has no latent records (artifacts/step_*/latents_*.safetensors) and no "
                         "crosscoder readings")
    for hook in hooks:
        print(write_dashboard(args.run, hook, args.out, args.max_latents, tuple(args.latent)))
    for hook in crosscoders if not args.hook else [h for h in crosscoders if h in args.hook]:
        print(write_crosscoder_page(args.run, hook, args.out) or f"{hook}: the crosscoder's readings have no top "
              "windows (a run from before they were recorded)")


if __name__ == "__main__":
    main()
