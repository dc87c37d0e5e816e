"""Rows packed ahead of the step, in a worker process (torch's DataLoader, one worker).

Tokenising and packing (pure Python around a Rust tokenizer) then overlap the LM step instead of stalling it.
A process, not a thread: a Python thread packing rows would hold the GIL against the training thread, which
releases and retakes it around every torch op (measured here: the main thread's own bookkeeping ran ~10× slower
beside a packing thread). Exact resume: the worker snapshots its stream's state after every row it packs and the
snapshot travels with the row, so `state_dict()` is the state after the last row *handed out*, however far ahead
the worker is; a checkpoint never records rows that were packed but not trained on. `load_state_dict` restarts
the worker from the loaded state.

A worker that dies (the OOM killer, a kill -9), or that delivers nothing for `data.worker_timeout_s` while the
trainer waits (stopped, deadlocked: the DataLoader's own timeout), is killed and restarted from that same state,
so the rows continue exactly as if nothing had happened. Where a death is noticed: torch's SIGCHLD handler would
raise from wherever the trainer happens to be (an eval, a checkpoint), so it is replaced by one that raises only
while the trainer waits for rows — the one place it must: a worker killed halfway through sending a chunk larger
than the pipe's buffer leaves half a message, and the read of the rest would block for ever (the queue's write
end stays open in the trainer). Before each wait, a worker found dead is restarted at once. A worker that keeps
dying without delivering a row stops the run with a DataSourceError.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import os
import signal
import threading
import warnings
import weakref
from functools import partial

import torch
from tqdm import tqdm

from chrono_membench.data.stream import MixtureStream, Row, stream_stats
from chrono_membench.errors import DataSourceError

# the worker is forked after the tokenizer has been used; HF tokenizers then disable their own thread pool, with a
# warning per process unless told beforehand
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No tqdm monitor threads (model loading and the training bar would start them): a Python thread starting or
# ending while the trainer forks its worker can leave the child blocked for ever on the interpreter's thread-list
# lock (seen here: a DDP resume whose worker hung in PyOS_AfterFork_Child, CPython 3.11).
tqdm.monitor_interval = 0


CHUNK_TOKENS = 8192  # rows travel in chunks of about this many tokens: each DataLoader item costs ≈ 0.7 ms here
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_RESTARTS_IN_A_ROW = 3  # worker deaths with no row delivered in between, before the run gives up


class _Rows(torch.utils.data.IterableDataset):
    """What the worker runs: chunks of (row, the stream's state after it), until a finite stream ends."""

    def __init__(self, stream: MixtureStream, rows_per_chunk: int):
        self.stream, self.rows_per_chunk = stream, rows_per_chunk

    def __iter__(self):
        chunk = []
        while (row := self.stream.next_row()) is not None:
            chunk.append((_with_arrays(row, torch.Tensor.numpy), self.stream.state_dict()))
            if len(chunk) == self.rows_per_chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _with_arrays(row: Row, convert) -> Row:
    """The row's tensors through `convert`: numpy arrays cross the pipe by value in ≈ 0.2 ms a row, while tensors
    go through shared-memory files at ≈ 2 ms a row (measured), more than packing a 256-token row costs."""
    return dataclasses.replace(row, tokens=convert(row.tokens), doc_index=convert(row.doc_index),
                               source_index=convert(row.source_index))


def _as_is(item):
    return item


def _worker_init(trainer_pid: int, worker_id: int) -> None:
    """In the worker: SIGTERM/SIGINT are the trainer's to handle (torchrun and Slurm signal the whole process
    group, a terminal's Ctrl-C too). A worker killed by them would crash the step in flight (the DataLoader raises
    when a worker dies) instead of letting the trainer finish it and checkpoint. The trainer stops the worker when
    it closes the stream (and at exit, below); if the trainer is killed outright, Linux kills the worker with it
    (PR_SET_PDEATHSIG), where it would otherwise hang on a full pipe nobody reads."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the DataLoader's parent watchdog still ends the worker
        pass
    if os.getppid() != trainer_pid:  # the trainer died before prctl took effect
        os._exit(0)


def _on_sigchld(signum, frame) -> None:
    """A child ended. If it is the worker a stream is waiting on, interrupt the wait (PEP 475 retries a read that a
    signal interrupts unless the handler raises); otherwise the next wait finds the dead worker itself."""
    for stream in list(_streams):
        if stream._fetching and stream._worker_failed():
            raise WorkerDied("DataLoader worker exited while sending rows")


class WorkerDied(RuntimeError):
    """The prefetch worker process ended without being asked to."""


_streams: weakref.WeakSet = weakref.WeakSet()  # live PrefetchedStreams, for the SIGCHLD handler


def prefetched(stream: MixtureStream, depth: int) -> PrefetchedStream | MixtureStream:
    """The stream with `depth` rows packed ahead (data.prefetch_rows); depth 0: the stream itself."""
    return PrefetchedStream(stream, depth) if depth > 0 else stream


_workers: list = []  # every prefetch worker started in this process (multiprocessing.Process)


def _kill(workers) -> None:
    """The workers ignore SIGTERM, so the DataLoader's last resort (terminate) cannot stop one that is stuck."""
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join()


def _stop(chunks) -> None:
    chunks._shutdown_workers()  # the DataLoader's own orderly stop
    _kill(chunks._workers)


@atexit.register
def _stop_all() -> None:
    """Before multiprocessing's own exit handler, which would SIGTERM live workers (ignored) and wait for ever: a
    stream never closed, or whose DataLoader iterator was collected without stopping its worker."""
    _kill(_workers)


class PrefetchedStream:
    """A MixtureStream's rows, `depth` rows ahead (next_row, state_dict, load_state_dict, stats, as the stream).
    The stream object given stays where it was: the worker advances its own copy."""

    def __init__(self, stream: MixtureStream, depth: int):
        self.stream, self.depth = stream, depth
        self._state = stream.state_dict()  # after the last row handed out
        self.rows_per_chunk = max(1, min(depth, CHUNK_TOKENS // stream.cfg.seq_len))
        self._chunks = None  # the worker's iterator, started by the first next_row (after any resume)
        self._chunk: list = []
        self.restarts, self._restarts_in_a_row = 0, 0  # dead workers replaced, this session
        self._ended = False  # the stream ran out (repeat=False): it stays ended
        self._fetching = False  # True while the trainer waits for the worker's next chunk
        _streams.add(self)

    def _start(self) -> None:
        loader = torch.utils.data.DataLoader(
            _Rows(self.stream, self.rows_per_chunk), batch_size=None, num_workers=1, collate_fn=_as_is,
            prefetch_factor=max(2, -(-self.depth // self.rows_per_chunk)),  # in chunks
            worker_init_fn=partial(_worker_init, os.getpid()), timeout=self.stream.cfg.worker_timeout_s,
            # its own generator: making the iterator draws the workers' base seed, which from the global RNG would
            # shift every later torch random number by whether (and how often) a worker was started
            generator=torch.Generator().manual_seed(0))
        self._chunks = iter(loader)
        if threading.current_thread() is threading.main_thread():  # in place of torch's: see the docstring
            signal.signal(signal.SIGCHLD, _on_sigchld)
        _workers[:] = [w for w in _workers if w.is_alive()] + list(self._chunks._workers)

    def next_row(self) -> Row | None:
        if self._ended:
            return None
        if self._chunks is None:
            self._start()
        if not self._chunk:
            if not self._worker_alive():  # died while the trainer was elsewhere: it may have left half a chunk
                return self._restart(WorkerDied("DataLoader worker exited"))
            self._fetching = True
            try:
                self._chunk = list(next(self._chunks, []))[::-1]
            except RuntimeError as e:
                if not isinstance(e, WorkerDied) and not any(m in str(e) for m in ("DataLoader worker", "DataLoader timed")):
                    raise  # not the worker's death, nor its silence (data.worker_timeout_s)
                return self._restart(e)
            finally:
                self._fetching = False
            self._restarts_in_a_row = 0
            if not self._chunk:  # the stream ended; it stays ended
                self._ended = True
                return None
        row, self._state = self._chunk.pop()
        return _with_arrays(row, torch.from_numpy)

    def _worker_alive(self) -> bool:
        return self._chunks is None or all(w.is_alive() for w in self._chunks._workers)

    def _worker_failed(self) -> bool:
        """A worker ended by a signal or an error. Not the clean exit of one the DataLoader shuts down itself when a
        finite stream runs out — inside the very next() the trainer is waiting in, so its SIGCHLD arrives then."""
        return self._chunks is not None and any(w.exitcode not in (None, 0) for w in self._chunks._workers)

    def _restart(self, error: RuntimeError) -> Row | None:
        """A new worker, from the state after the last row handed out: the rows go on exactly where they were."""
        self.restarts, self._restarts_in_a_row = self.restarts + 1, self._restarts_in_a_row + 1
        if self._restarts_in_a_row > MAX_RESTARTS_IN_A_ROW:
            raise DataSourceError(f"the data worker died or stuck {self._restarts_in_a_row} times in a row without "
                                  f"delivering a row (last: {error}); check the machine's memory (the OOM killer) and "
                                  "data.worker_timeout_s, then resume the run")
        warnings.warn(f"data worker died or stuck ({error}); restarted from the stream's state after the last row "
                      "handed out", stacklevel=3)
        self.close()
        self.stream.load_state_dict(self._state)
        return self.next_row()

    def state_dict(self) -> dict:
        return self._state

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.stream.load_state_dict(state)
        self._state, self._ended = state, False

    def stats(self) -> dict:
        return {**stream_stats(self._state), "worker_restarts": self.restarts}

    def close(self) -> None:
        """Stop the worker (the rows it packed ahead are dropped)."""
        if self._chunks is not None:
            _stop(self._chunks)  # now, not whenever the iterator is garbage-collected
        self._chunks, self._chunk = None, []
