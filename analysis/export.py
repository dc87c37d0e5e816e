"""Share a run's SAEs (and its fine-tuned model and crosscoder): a directory that other tools load, with a model card,
and the upload by sae-lens's and huggingface_hub's own uploaders when the hub is reachable — otherwise the command
to run later, printed.

    python analysis/export.py runs/<name> --out export/ [--steps 0 30] [--repo USER/NAME [--upload]]

Writes, under --out: `saes/step_<N>/<hook>/` (each checkpoint's sae-lens SAE as the run exported it:
`SAE.load_from_disk`; its cfg.json names the model, hook, context size, data and the step), `crosscoder/step_<N>/`
(with crosscoder.enabled), `model/` (the fine-tuned model, Hugging Face format) and `README.md`, the card: what was
trained on what, each SAE's quality at its step (FVE, CE recovered, L0 from metrics.jsonl), how to load them.
With --upload, the SAEs go through `sae_lens.upload_saes_to_huggingface` (sae ids `step_<N>/<hook>`), then the card,
the model and the crosscoders through `HfApi.upload_folder`; the hub is tried once (5 s) first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import yaml
from common import Run, load_run

from chrono_membench import metric_keys as K
from chrono_membench.net import unreachable
from chrono_membench.run_dir import RunDir

HUB = "https://huggingface.co"


def sae_dirs(run: RunDir, steps: list[int] | None) -> dict[int, dict[str, Path]]:
    """{step: {hook: the exported SAE's directory}} of every checkpoint (or of `steps`)."""
    out: dict[int, dict[str, Path]] = {}
    for step, path in run.artifact_steps("sae"):
        if steps is None or step in steps:
            cfg = yaml.safe_load((path / "cfg.json").read_text())  # JSON is YAML
            out.setdefault(step, {})[cfg["metadata"]["hook_name"]] = path
    return out


def card(config: dict, saes: dict[int, dict[str, Path]], run: Run, repo: str | None, crosscoders: list[int]) -> str:
    model, data, train = config["model"], config["data"], config["train"]
    mixture = ", ".join(f"{s} {w:g}" for s, w in data["mixture"].items() if w > 0)
    rows = []
    for step, hooks in sorted(saes.items()):
        for hook in hooks:
            r = run.at(step)
            cells = [f"{r[K.sae(hook, n)]:.3f}" if K.sae(hook, n) in r else "–" for n in ("eval_fve", "ce_recovered",
                                                                                         "eval_l0")]
            rows.append(f"| `step_{step}/{hook}` | {step} | {hook} | " + " | ".join(cells) + " |")
    first_id = next((f"step_{s}/{h}" for s, hs in sorted(saes.items()) for h in hs), "step_0/<hook>")
    load = (f'SAE.from_pretrained("{repo}", "{first_id}")' if repo else
            f'SAE.load_from_disk("saes/{first_id}")')
    return "\n".join([
        f"# SAEs through the fine-tuning of {model['name']}",
        "",
        f"Trained with chrono-membench alongside the fine-tuning of `{model['name']}` for {train['max_steps']} steps "
        f"on {data['origin']} data ({mixture}), {data['seq_len']}-token rows of EOS-separated documents; one SAE per "
        "hook point per checkpoint, each taking the raw activations of the model *at that step* "
        "(cfg.json: `metadata.chrono_membench_step`). Architecture, width and k are in each cfg.json.",
        "",
        "| sae id | step | hook | FVE | CE recovered | L0 |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "FVE, CE recovered and L0: the run's eval panel at that step (validation tokens; sae-lens definitions).",
        "",
        "```python",
        "from sae_lens import SAE",
        f"sae = {load}",
        "```",
        "",
        "The fine-tuned model, where the run finished, is in `model/` (Hugging Face format).",
        "",
        *([f"Crosscoders between the step-0 and the fine-tuned model at steps {crosscoders}: `crosscoder/step_<N>/`, "
           "loaded with `chrono_membench.crosscoder.load` (input [tokens, 2, d], step 0 first)."] if crosscoders else []),
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, nargs="+", help="only these checkpoints' SAEs (default: all)")
    parser.add_argument("--repo", help="the Hugging Face repo id (USER/NAME) the card names and --upload uses")
    parser.add_argument("--upload", action="store_true", help="upload to --repo (needs the hub and a login)")
    args = parser.parse_args(argv)
    run = RunDir(args.run)
    if not run.config.exists():
        print(f"error: {args.run} is not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    if args.upload and not args.repo:
        print("error: --upload needs --repo USER/NAME", file=sys.stderr)
        return 2
    saes = sae_dirs(run, args.steps)
    if not saes:
        print(f"error: {args.run} has no exported SAEs (checkpointing.save_sae_state was off, or no checkpoint)"
              + (f" at steps {args.steps}" if args.steps else ""), file=sys.stderr)
        return 2
    config = yaml.safe_load(run.config.read_text())
    out = args.out
    for step, hooks in saes.items():
        for hook, path in hooks.items():
            shutil.copytree(path, out / "saes" / f"step_{step}" / hook, dirs_exist_ok=True)
    crosscoders = []
    for step, path in run.artifact_steps("crosscoder"):
        if args.steps is None or step in args.steps:
            (out / "crosscoder" / f"step_{step}").mkdir(parents=True, exist_ok=True)
            for f in path.parent.glob("crosscoder*"):
                shutil.copy2(f, out / "crosscoder" / f"step_{step}" / f.name)
            crosscoders.append(step)
    if run.final_model.exists():
        shutil.copytree(run.final_model, out / "model", dirs_exist_ok=True)
    (out / "README.md").write_text(card(config, saes, load_run(args.run), args.repo, crosscoders))
    n = sum(len(h) for h in saes.values())
    extras = (", the model" if run.final_model.exists() else "") + (f", {len(crosscoders)} crosscoders"
                                                                      if crosscoders else "")
    print(f"written: {out} ({n} SAEs at steps {sorted(saes)}, the card README.md{extras})")
    again = f"python analysis/export.py {args.run} --out {out} --repo {args.repo} --upload" + (
        f" --steps {' '.join(map(str, args.steps))}" if args.steps else "")
    if not args.upload:
        if args.repo:
            print(f"to upload: {again}")
        return 0
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    why = "HF_HUB_OFFLINE is set" if offline else unreachable(HUB)
    if why:
        print(f"not uploaded: the hub cannot be reached ({why}); on a machine with network and `hf auth login`:\n"
              f"  {again}", file=sys.stderr)
        return 1
    from huggingface_hub import HfApi
    from sae_lens import upload_saes_to_huggingface

    upload_saes_to_huggingface({f"step_{s}/{h}": p for s, hs in saes.items() for h, p in hs.items()}, args.repo,
                               add_default_readme=False)
    HfApi().upload_folder(folder_path=str(out), repo_id=args.repo, ignore_patterns=["saes/*"],
                          commit_message="chrono-membench: card, model, crosscoders")
    print(f"uploaded to {HUB}/{args.repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
