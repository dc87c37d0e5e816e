"""Every logged value goes to wandb (offline by default) and to runs/<name>/metrics.jsonl.

The JSONL mirror is the source of truth for tests and analysis: an offline wandb run cannot be read back
without a server. If wandb cannot start or fails mid-run, we warn once and go on with the JSONL alone.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from functools import partial
from pathlib import Path

from tqdm import tqdm

from chrono_membench import metric_keys as K
from chrono_membench.errors import ConfigError
from chrono_membench.net import unreachable
from chrono_membench.run_dir import RunDir, atomic_write, write_error


def read_metrics(path: str | Path) -> list[dict]:
    """All complete lines of a metrics.jsonl (a half-written last line is ignored); a damaged line is named in one
    line (ConfigError)."""
    return [record for _, record in _complete_lines(path)]


def _complete_lines(path: str | Path):
    """(line, record) for each complete line of a metrics.jsonl."""
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ConfigError(f"{path} line {n} is not a metrics record ({line[:60].strip()!r}): the file is damaged; "
                                  "remove or repair that line")
            yield line, record


def check_metrics(run: RunDir) -> None:
    """Before a resume: a run with checkpoints has its metrics.jsonl, and every complete line of it reads (a missing
    one would be rebuilt short, silently: refused instead)."""
    if run.list_checkpoints() and not run.metrics.exists():
        raise ConfigError(f"--resume {run.root}: {run.metrics} is missing, though checkpoints up to step "
                          f"{run.list_checkpoints()[-1].name.removeprefix('step_').lstrip('0') or 0} cover what it held; "
                          "restore it from a backup (or start a new run): resuming would leave those lines lost")
    if run.metrics.exists():
        for _ in _complete_lines(run.metrics):
            pass


def split_run(ref: str | Path) -> tuple[Path, str | None]:
    """A run reference → (run directory, SAE variant or None): `runs/<name>` or `runs/<name>#<variant>`, the
    latter meaning the run as that variant of its SAEs (sae.variants) saw it."""
    path, _, variant = str(ref).partition("#")
    return Path(path), variant or None


def run_records(ref: str | Path) -> list[dict]:
    """The metrics a run reference logged (split_run), each record in the variant's view where one is named."""
    path, variant = split_run(ref)
    records = read_metrics(RunDir(path).metrics)
    return [K.variant_view(r, variant) for r in records] if variant else records


def final_values(run_dir: str | Path) -> dict[str, float]:
    """The last logged value of every numeric key of a run (a run reference: split_run)."""
    last: dict[str, float] = {}
    for record in run_records(run_dir):
        last.update({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"})
    return last


def truncate_metrics(path: Path, last_step: int) -> int:
    """On resume from a checkpoint at last_step: keep lines with step <= last_step (the rest will be logged
    again), drop a half-written tail. Rewritten atomically. Returns the number of lines dropped."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line, record in _complete_lines(path) if record["step"] <= last_step]
    with atomic_write(path) as tmp:
        tmp.write_text("".join(keep))
    return len(lines) - len(keep)


def _clean(value):
    """JSON has no NaN/inf: log them as strings so the line stays valid and the event stays visible."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def wandb_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why wandb's server (WANDB_BASE_URL, else api.wandb.ai) cannot be reached, in words; None if a TCP
    connection opens within timeout_s. A node without network otherwise waits out wandb's init timeout."""
    return unreachable(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"), timeout_s)


class NullLogger:
    """The logger's interface, doing nothing: what ranks other than 0 log through under torchrun, so the loop
    never asks who it is before logging."""
    wandb_run = None
    wandb_dir: Path | None = None

    def log(self, step: int, values: dict) -> None: ...

    def log_artifact(self, path: Path, name: str, kind: str) -> None: ...

    def log_table(self, name: str, columns: list[str], rows: list[list]) -> None: ...

    def log_panels(self, step: int, matrices: dict, hooks: list[str]) -> None: ...

    def health(self) -> dict[str, float]:
        """Upload counters worth logging (none without wandb)."""
        return {}

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MetricsLogger(NullLogger):
    def __init__(self, run_dir: RunDir | Path, config: dict, wandb_mode: str, project: str, group: str,
                 job_type: str, run_name: str, init_timeout_s: float = 20.0):
        run_dir = RunDir(run_dir)
        self.path, self.config = run_dir.metrics, config
        self._file = open(self.path, "a")
        self.pending_artifacts: list[tuple[Path, str, str]] = []  # failed uploads, retried with the next and at close
        self.artifact_failures = 0
        mode = os.environ.get("WANDB_MODE", wandb_mode)  # the environment wins
        if mode == "disabled":
            return
        unreachable = wandb_unreachable() if mode == "online" else None
        if unreachable:  # say so at once, rather than after wandb's own wait
            mode = "offline"
        try:
            import wandb

            init = partial(wandb.init, project=project, group=group, job_type=job_type, name=run_name, id=run_name,
                           dir=str(run_dir.root), config=config, resume="allow",
                           settings=wandb.Settings(silent=True, init_timeout=init_timeout_s))
            try:
                self.wandb_run = init(mode=mode)
            except Exception as e:  # reachable but not answering in time (or refusing the key): log offline
                if mode != "online":
                    raise
                unreachable, mode = f"{type(e).__name__}: {str(e)[:200]}", "offline"
                wandb.teardown()  # the timed-out attempt still holds the run's id in wandb's service ("in use")
                self.wandb_run = init(mode=mode)
            self.wandb_dir = Path(self.wandb_run.dir).parent
            if unreachable:
                warnings.warn(f"wandb unreachable ({unreachable}); logging offline to {self.wandb_dir}; sync later "
                              f"with: wandb sync {self.wandb_dir}", stacklevel=2)
            from chrono_membench.panels import SUMMARIES
            for pattern, summary in SUMMARIES.items():
                self.wandb_run.define_metric(pattern, summary=summary)
        except Exception as e:  # no network, no login, broken install: keep training
            self._wandb_failed(e)

    def _wandb_failed(self, error: Exception) -> None:
        warnings.warn(f"wandb disabled for this run ({type(error).__name__}: {error}); metrics.jsonl still has everything",
                      stacklevel=2)
        self.wandb_run = None

    def log(self, step: int, values: dict) -> None:
        record = {"step": step, **{k: _clean(v) for k, v in values.items()}}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:  # a full disk: the run stops with exit 5 (a half line is dropped on resume)
            raise write_error(self.path, e) from None
        if self.wandb_run is not None:
            try:
                self.wandb_run.log(values, step=step)
            except Exception as e:
                self._wandb_failed(e)

    def log_artifact(self, path: Path, name: str, kind: str) -> None:
        """Upload a file or directory as a wandb artifact (the local copy under the run directory stays).
        A failed upload does not stop training: it is counted and retried with the next call and at close()."""
        if self.wandb_run is None:
            return
        self.pending_artifacts.append((path, name, kind))
        self._upload_pending()

    def _upload_pending(self) -> None:
        queue, self.pending_artifacts = self.pending_artifacts, []
        for item in queue:
            try:
                import wandb

                artifact = wandb.Artifact(name=item[1], type=item[2])
                with tqdm.external_write_mode():  # wandb's "Adding directory to artifact" on a line of its own
                    artifact.add_dir(str(item[0])) if item[0].is_dir() else artifact.add_file(str(item[0]))
                    self.wandb_run.log_artifact(artifact)
            except Exception as e:
                self.artifact_failures += 1
                self.pending_artifacts.append(item)
                warnings.warn(f"wandb artifact {item[1]} not uploaded ({type(e).__name__}: {e}); will retry", stacklevel=2)

    def log_panels(self, step: int, matrices: dict, hooks: list[str]) -> None:
        """The eval's interactive plotly panels (panels.py), from metrics.jsonl so far and the purity matrices."""
        if self.wandb_run is None:
            return
        try:
            import wandb

            from chrono_membench.panels import eval_panels
            self._file.flush()
            figures = eval_panels(read_metrics(self.path), matrices, hooks, step, self.config)
            self.wandb_run.log({name: wandb.Plotly(fig) for name, fig in figures.items()}, step=step)
        except Exception as e:
            warnings.warn(f"wandb panels not logged at step {step} ({type(e).__name__}: {e})", stacklevel=2)

    def log_table(self, name: str, columns: list[str], rows: list[list]) -> None:
        if self.wandb_run is None:
            return
        try:
            import wandb

            self.wandb_run.log({name: wandb.Table(columns=columns, data=rows)})
        except Exception as e:
            self._wandb_failed(e)

    def health(self) -> dict[str, float]:
        if self.wandb_run is None:
            return {}
        return {"logging/artifact_upload_failures": self.artifact_failures,
                "logging/artifacts_pending": len(self.pending_artifacts)}

    def flush(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise write_error(self.path, e) from None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()
            self._finish_wandb()

    def _finish_wandb(self) -> None:
        if self.wandb_run is not None:
            if self.pending_artifacts:  # the last checkpoint's uploads get one more try
                self._upload_pending()
            try:
                self.wandb_run.finish()
            except Exception as e:
                self._wandb_failed(e)


def make_logger(rank: int, run_dir: RunDir, cfg) -> NullLogger:
    """Rank 0 logs (metrics.jsonl and wandb); other ranks get the null logger with the same interface."""
    if rank != 0:
        return NullLogger()
    return MetricsLogger(run_dir, cfg.to_dict(), cfg.logging.wandb_mode, cfg.logging.project,
                         cfg.logging.group or cfg.run.preset or "default", cfg.run.ablation, run_dir.name,
                         cfg.logging.init_timeout_s)
