"""Errors every layer may raise, and the one table of how a run ends: exception → exit code → the one line on
stderr → what to do. experiments/run.py's handler, its --help, README's pointer and docs/faults.md's table all come
from FAULTS (tests/test_docs.py holds the page to `fault_table()`). A new fault: its exception here, one row, the
place that raises it. Kept free of imports so that no module needs the config (or torch) to raise one.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


class ConfigError(ValueError):
    """A bad configuration value or input; the message is one line naming the field and what is allowed."""


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says why and what to install or set."""


class DataSourceError(RuntimeError):
    """A source cannot be read; the message names the file or dataset and what to do."""


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (too many non-finite steps); a checkpoint of the last good state exists."""


class Preempted(RuntimeError):
    """A signal asked the run to stop; a checkpoint of the current step was written."""


class RunWriteError(OSError):
    """A checkpoint, artifact or metrics line could not be written (full disk, permissions); nothing half-written
    is left; the message names the path, the space it needed and the space free."""


def _full_disk(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def _out_of_memory(e: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA), the CPU allocator's RuntimeError, or Python's own MemoryError."""
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


@dataclass(frozen=True)
class Fault:
    code: int
    name: str  # a few words: run.py --help's list
    how: str  # how the run ended, in full
    todo: str  # what to do
    raised: tuple[type[BaseException], ...] = ()  # the exceptions that end a run this way
    label: str = "error"  # the stderr line: "<label>: <message>"
    also: object = None  # a predicate for other exceptions that end it this way (a full disk's plain OSError)

    def matches(self, e: BaseException) -> bool:
        return isinstance(e, self.raised) or (self.also is not None and self.also(e))

    def line(self, e: BaseException) -> str:
        """The one line run.py prints for `e`."""
        if isinstance(e, RunWriteError):
            return f"{self.label}: {e.strerror}"
        if isinstance(e, OSError) and _full_disk(e):
            return f"{self.label}: {e} (a full disk; the previous good checkpoint is intact)"
        if _out_of_memory(e):  # the allocator's message, shortened to what says how much it wanted
            said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            said = said[said.find("DefaultCPUAllocator"):] if "DefaultCPUAllocator" in said else said
            return (f"{self.label}: {said[:200]}; lower train.micro_batch, sae.expansion, data.seq_len or "
                    "sae.eval_tokens (or free memory), then --resume (before a first checkpoint: the same command)")
        return f"{self.label}: {e}"


FAULTS = (
    Fault(0, "finished",
          "finished (an SAE retired on the way, or a data worker restarted, still ends here: see the warnings and "
          "`sae/<hook>/retired_at_step`, `data/worker_restarts`)",
          "`analysis/report.py`"),
    Fault(2, "bad configuration or input",
          "bad configuration or input: one line on stderr naming the field and what is allowed, before the model "
          "loads where the check needs no model (`sae.k` against the SAE's width needs it); a run directory in use "
          "by a live process (checked before the heavy imports); `--resume` of a different experiment; a data "
          "worker that died or stuck 4 times in a row without delivering a row",
          "fix what the line names", (ConfigError, DataSourceError, ModelLoadError, FileNotFoundError)),
    Fault(3, "stopped on purpose (diverged)",
          "stopped on purpose: more than `train.max_skipped_in_a_row` non-finite LM updates in a row; the last good "
          "weights are checkpointed",
          "lower the LR, then `--resume`", (TrainingStopped,), "stopped"),
    Fault(4, "preempted and checkpointed",
          "preempted: SIGTERM/SIGINT; the step in flight finished and was checkpointed (a later signal during "
          "teardown still ends with 4)",
          "`--resume`", (Preempted,), "preempted"),
    Fault(5, "a write failed (full disk, permissions)",
          "a checkpoint, artifact or `metrics.jsonl` line could not be written (a full disk, a quota, permissions): "
          "the message names the path, the space it needed and the space free; the previous good checkpoint is intact",
          "free space (or move the run directory), then `--resume`", (RunWriteError,), also=_full_disk),
    Fault(6, "out of memory",
          "out of memory: a tensor could not be allocated (the CPU allocator, CUDA, or Python); the last good "
          "checkpoint is intact",
          "lower what the line names, then `--resume`", (MemoryError,), "out of memory", also=_out_of_memory),
    Fault(137, "killed",
          "killed (SIGKILL, the OOM killer; −9)",
          "`--resume`: from the last checkpoint, or from step 0 with a clean log if it had none yet (killed before "
          "its run directory existed: the same command again); an OOM kill: lower what exit 6 names"),
    Fault(143, "signalled before a checkpoint could be made",
          "a second SIGTERM/SIGINT before the first one's checkpoint was complete, or a signal before training "
          "started (−15)",
          "`--resume`, as for 137"),
    Fault(1, "a bug (a traceback)", "a bug: a traceback", "please report it"),
)
EXIT_PREEMPTED = next(f.code for f in FAULTS if Preempted in f.raised)
BAD_INPUT = next(f for f in FAULTS if f.code == 2).raised  # refused before anything heavy is loaded


def fault_of(e: BaseException) -> Fault | None:
    """The row a raised exception ends the run by, or None (a bug: let it raise, exit 1 with its traceback)."""
    return next((f for f in FAULTS if f.matches(e)), None)


def fault_table() -> str:
    """FAULTS as the Markdown table docs/faults.md holds."""
    rows = [f"| `{f.code}` | {f.how} | {f.todo} |" for f in FAULTS]
    return "\n".join(["| code | how it ended | what to do |", "|---|---|---|", *rows])


def exit_codes() -> str:
    """FAULTS as run.py's --help lists them: one line a code."""
    return "Exit codes:\n" + "\n".join(f"  {f.code:>3}  {f.name}: {f.todo.replace('`', '')}" for f in FAULTS)
