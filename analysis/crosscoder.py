"""The crosscoder between the step-0 and the fine-tuned model through time (chrono_membench/crosscoder.py): the
relative decoder norm's histogram at every checkpoint with the null twin's at the last one and the class threshold;
its spread over latents at every eval beside the null twin's (the model's change short of a class); and when each
fine-tuned-only latent emerged (the title gives the last checkpoint's class counts). Read from
artifacts/step_N/crosscoder_latents_<hook>.json and metrics.jsonl.

    python analysis/crosscoder.py runs/<name> --out figures/
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import parse_args, save_figure

from chrono_membench import metric_keys as K
from chrono_membench.run_dir import RunDir

BINS = np.linspace(0, 1, 101)


def main() -> None:
    args = parse_args(__doc__)
    for run in args.loaded:
        readings = RunDir(run.directory).crosscoder_readings() if run.directory else []
        if not readings:
            print(f"{run.name}: no crosscoder readings (crosscoder.enabled was off)")
            continue
        fig = make_subplots(rows=1, cols=3, subplot_titles=[
            "r = ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖) per latent", "r's spread over latents: model vs null twin",
            "fine-tuned-only latents by emergence step"])
        centres = (BINS[1:] + BINS[:-1]) / 2
        for i, (step, r) in enumerate(readings):
            counts, _ = np.histogram(r["relative_norm"], BINS)
            fig.add_trace(go.Scatter(x=centres, y=np.where(counts > 0, counts, np.nan), mode="lines+markers",
                                     name=f"step {step}", marker={"size": 4},
                                     line={"color": f"hsl(220,70%,{75 - 50 * i // max(1, len(readings) - 1)}%)"}),
                          row=1, col=1)
        last = readings[-1][1]
        counts, _ = np.histogram(last["relative_norm_null"], BINS)
        fig.add_trace(go.Scatter(x=centres, y=np.where(counts > 0, counts, np.nan), mode="lines", name="null twin (last)",
                                 line={"color": "grey", "dash": "dash"}), row=1, col=1)
        for x in (last["threshold"], 1 - last["threshold"]):
            fig.add_vline(x=x, line_dash="dot", line_color="firebrick", row=1, col=1)
        for name, label, colour in (("r_sd", "SD of r", "black"), ("r_sd_null", "SD of r, null twin", "grey")):
            steps, values = run.series(K.crosscoder(name))
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=label,
                                     line={"color": colour, "dash": "dash" if "null" in name else "solid"}),
                          row=1, col=2)
        born = [e["emergence_step"] for e in last["ft_only"]]
        max_steps, every = run.config["train"]["max_steps"], run.config["train"]["chrono_every"]
        fig.add_trace(go.Histogram(x=born, xbins={"start": -every / 2, "end": max_steps + every / 2, "size": every},
                                   name="emerged at", marker_color="firebrick", showlegend=False), row=1, col=3)
        if not born:
            fig.add_annotation(text="no fine-tuned-only latent", x=max_steps / 2, y=0.5, showarrow=False, row=1, col=3)
        fig.update_yaxes(type="log", title_text="latents", row=1, col=1)
        fig.update_yaxes(title_text="SD of r", rangemode="tozero", row=1, col=2)
        fig.update_yaxes(title_text="latents", row=1, col=3)
        fig.update_xaxes(title_text="relative norm", range=[0, 1], row=1, col=1)
        fig.update_xaxes(title_text="step", row=1, col=2)
        fig.update_xaxes(title_text=f"emergence step (recorded every {every} steps)", range=[0, max_steps], row=1, col=3)
        fig.update_layout(title=f"Crosscoder step 0 ↔ fine-tuned [{last['hook']}] · {run.label}: "
                                f"{len(last['ft_only'])} fine-tuned-only, {len(last['base_only'])} base-only of "
                                f"{len(last['relative_norm'])} at step {readings[-1][0]}",
                          template="plotly_white", height=480, width=1400)
        print(save_figure(fig, args.out, f"crosscoder_{run.label}"))


if __name__ == "__main__":
    main()
