"""Train one run: `python experiments/run.py [--preset NAME | --config PATH] [--ablation NAME] [key=value ...]`.

    python experiments/run.py                                   # the offline demo (SmolLM2-135M, CPU)
    python experiments/run.py --preset demo-gemma               # the same with Gemma 3 270M
    python experiments/run.py --preset tiny train.max_steps=6   # dotted overrides
    python experiments/run.py --resume runs/<name>              # or --resume latest
    torchrun --nproc_per_node 2 experiments/run.py --preset demo train.max_steps=6   # data-parallel (DDP)

Every way it ends, with what to do, is chrono_membench/errors.py's FAULTS (docs/faults.md's table); --help lists
the codes.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
import warnings
from pathlib import Path

from chrono_membench.config import ABLATIONS, ConfigError, config_from_dict, load_config, parse_override, read_yaml
from chrono_membench.errors import BAD_INPUT, exit_codes, fault_of
from chrono_membench.logging import check_metrics
from chrono_membench.run_dir import RunDir, check_unlocked, check_world_size, latest_run
from chrono_membench.safety import check_resume_config

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def resolve_resume(arg: str, out_dir: str) -> Path:
    if arg != "latest":
        if not RunDir(arg).config.exists():
            raise ConfigError(f"--resume {arg}: not a run directory (no config.yaml); a run stopped before it wrote "
                              "one (killed while starting) has nothing to resume: run the same command again")
        return Path(arg)
    run = latest_run(out_dir)  # the newest run with a checkpoint: one that never trained has nothing to resume
    if run is None:
        raise ConfigError(f"--resume latest: no run directory with a checkpoint under {out_dir}/")
    return run.root


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__ + "\n" + exit_codes(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="a preset in experiments/configs/ (default: demo)")
    parser.add_argument("--config", default=None, help="a YAML config file")
    parser.add_argument("--ablation", default=None, help=" | ".join(ABLATIONS) + " (--help-config says what each is for)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR|latest")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--help-config", action="store_true",
                        help="print every config field with its default, allowed values and meaning (docs/configuration.md)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=6")
    return parser.parse_intermixed_args(argv)


def build(args) -> tuple:
    """Config and run directory, validated before anything heavy is loaded."""
    if args.resume:
        out_dir = dict(parse_override(o) for o in args.overrides).get("run.out_dir", "runs")
        run_dir = resolve_resume(args.resume, out_dir)
        tree = read_yaml(RunDir(run_dir).config)
        if not isinstance(tree.get("run"), dict) or not isinstance(tree.get("model"), dict):
            raise ConfigError(f"--resume {run_dir}: {RunDir(run_dir).config} is empty or corrupt (no run or model "
                              "section); restore it from a backup, or copy the config the run was started with")
        check_metrics(RunDir(run_dir))  # present where checkpoints are, and every line reads
        cfg = config_from_dict(tree)
        if args.overrides or args.ablation:
            cfg = load_config(config_path=RunDir(run_dir).config, overrides=args.overrides,
                              ablation=args.ablation or cfg.run.ablation)
            cfg.run.preset = tree["run"]["preset"]
        check_resume_config(RunDir(run_dir), tree, cfg.to_dict(), write_log=False)  # refused before heavy imports
        check_world_size(RunDir(run_dir), int(os.environ.get("WORLD_SIZE", "1")))
        return cfg, run_dir
    cfg = load_config(args.preset or (None if args.config else "demo"), args.config, args.overrides, args.ablation)
    if not cfg.run.name:
        cfg.run.name = f"{cfg.run.preset}-{cfg.run.ablation}-{time.strftime('%Y%m%d-%H%M%S')}"
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun every rank takes rank 0's name
            from chrono_membench.distributed import from_environment

            cfg.run.name = from_environment(cfg.train.parallel, cfg.run.device)[0].broadcast(cfg.run.name)
    out_dir = Path(cfg.run.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as e:
        raise ConfigError(f"run.out_dir={out_dir}: cannot create or write it ({e.strerror or e}); "
                          "set run.out_dir to a writable directory") from None
    run_dir = out_dir / cfg.run.name
    if RunDir(run_dir).list_checkpoints():
        raise ConfigError(f"run directory {run_dir} already has checkpoints; use --resume {run_dir} or another run.name")
    return cfg, run_dir


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.help_config:
        from chrono_membench.config_docs import reference

        print(reference(), end="")
        return 0
    warnings.formatwarning = lambda message, category, *_, **__: f"warning: {message}\n"  # one line each, no source
    try:
        cfg, run_dir = build(args)  # validated before anything heavy is imported or loaded
        if int(os.environ.get("RANK", "0")) == 0:
            check_unlocked(RunDir(run_dir))  # a live run in that directory: refused now, not after the imports
    except BAD_INPUT as e:
        print(fault_of(e).line(e), file=sys.stderr)
        return fault_of(e).code
    from chrono_membench.train import train

    from chrono_membench.distributed import shutdown

    quiet = int(os.environ.get("RANK", "0")) != 0  # under torchrun, rank 0 reports (these errors agree on all ranks)
    try:
        summary = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    except Exception as e:  # the fault table's ways to end (errors.FAULTS); anything else is a bug: its traceback
        fault = fault_of(e)
        if fault is None:
            raise
        if not quiet:
            print(fault.line(e), file=sys.stderr)
        return fault.code
    finally:
        shutdown()
    if quiet:
        return 0
    from chrono_membench.mfu import machine

    try:  # what this session cost and where it ran (analysis/study_page.py, plan.py --from-run read it)
        RunDir(run_dir).add_session({"steps": summary.steps, "tokens": summary.tokens, "wall_s": round(summary.wall_s, 1),
                                     "eval_s": round(summary.eval_s, 1), "resumed": bool(args.resume),
                                     "machine": machine(), "argv": sys.argv[1:] if argv is None else list(argv),
                                     "ended": time.strftime("%Y-%m-%d %H:%M")})
    except OSError as e:  # the run is complete; only its cost record is missing
        print(f"warning: {RunDir(run_dir).sessions} not written ({e.strerror or e})", file=sys.stderr)
    print(f"\n{'=' * 72}\nrun {run_dir.name}: {summary.steps} steps, {summary.tokens:,} tokens this session, "
          f"{summary.wall_s:.0f} s (evals {summary.eval_s:.0f} s, {summary.eval_s / max(summary.wall_s, 1e-9):.0%}), "
          f"{'bf16 autocast' if cfg.train.autocast == 'bf16' else 'fp32'}")
    print(f"train loss   first {summary.first_loss:.4f} → last {summary.last_loss:.4f} (this session)")
    if summary.val_ppl:
        (before_step, before), (after_step, after) = summary.val_ppl[0], summary.val_ppl[-1]
        print(f"val ppl      step {before_step}: {before:.3f} → step {after_step}: {after:.3f}")
    print(f"skipped steps {summary.skipped_steps}")
    from studies.summary import headline

    for line in headline(run_dir):
        print(line)
    print(f"run dir      {run_dir}  (metrics.jsonl, config.yaml, checkpoints/, final_model/)")
    if summary.wandb_dir is not None:
        print(f"wandb        {summary.wandb_dir}\n             sync with: wandb sync {summary.wandb_dir}")
    print(f"next         python analysis/report.py {run_dir} --out report/")
    return 0


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
