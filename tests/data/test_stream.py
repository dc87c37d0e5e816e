"""The stream: mixture shares, epochs, the hash split, packing, exact resume."""

import collections
import json
import os
import signal
import subprocess
import sys
import time


import pytest
import torch

from chrono_membench.config import DataConfig
from chrono_membench.data import PAD_SOURCE, MixtureStream, PrefetchedStream, is_validation




def make_stream(tokenizer, records, **kw):
    cfg = DataConfig(seq_len=kw.pop("seq_len", 64), shuffle_buffer=kw.pop("shuffle_buffer", 50), **kw)
    return MixtureStream(cfg, tokenizer, records=records)


def test_mixture_shares_follow_weights(tokenizer, records):
    stream = make_stream(tokenizer, records, seed=3)
    counts = collections.Counter(stream.next_document().source for _ in range(4000))
    for name, weight in DataConfig().mixture.items():
        assert abs(counts[name] / 4000 - weight) < 0.03, (name, counts)


def test_sources_restart_epochs_when_exhausted(tokenizer, records):
    stream = make_stream(tokenizer, records, mixture={"orca_math": 1.0})
    keys = [stream.next_document().key for _ in range(1200)]  # the sample has ~680 train problems
    assert stream.stats()["epochs"]["orca_math"] == 1
    assert max(collections.Counter(keys).values()) == 2  # the second epoch repeats documents, none thrice


def test_split_is_stable_and_about_15_percent():
    keys = [f"doc{i}" for i in range(20000)]
    sides = [is_validation("fineweb_edu", k, 15) for k in keys]
    assert 0.14 < sum(sides) / len(sides) < 0.16
    assert sides == [is_validation("fineweb_edu", k, 15) for k in keys]  # same document, same side
    assert sides[::-1] == [is_validation("fineweb_edu", k, 15) for k in reversed(keys)]  # whatever the order


def test_train_and_val_streams_are_disjoint_whatever_the_weights(tokenizer, records):
    train = make_stream(tokenizer, records, mixture={"fineweb_edu": 0.9, "orca_math": 0.1})
    val = MixtureStream(DataConfig(seq_len=64, mixture={"fineweb_edu": 0.5, "orca_math": 0.5}), tokenizer,
                        split="val", records=records)
    train_uids = {train.next_document().uid for _ in range(500)}
    val_uids = {val.next_document().uid for _ in range(100)}
    assert train_uids and val_uids and not train_uids & val_uids
    assert all(is_validation(u.split("/")[0], u.split("/", 1)[1], 15) for u in val_uids)


def test_validation_is_read_in_file_order_for_the_loss_and_in_a_seeded_random_order_for_the_unseen_probes(
        tokenizer, records):
    """The validation loss's rows are fixed whatever the seed (file order); the unseen probe windows must be a random
    draw of the validation documents like the seen ones are of the training documents — the file's head is one
    stretch of it (one novel, one run of articles), which a text-only classifier tells from the seen windows."""
    def uids(seed=None, shuffle=None, data_seed=0):
        stream = MixtureStream(DataConfig(seq_len=64, mixture={"wikitext103": 1.0}, seed=data_seed), tokenizer,
                               split="val", seed=seed, repeat=False, records=records, shuffle=shuffle)
        return [stream.next_document().uid for _ in range(12)]  # of the synthetic sample's 66

    head = uids()
    assert uids(seed=5) == head and uids(data_seed=3) == head  # file order: the same whatever the seeds
    drawn = uids(shuffle=True)
    assert drawn == uids(shuffle=True) and drawn != uids(shuffle=True, data_seed=3)  # seeded by data.seed
    assert len(set(drawn) - set(head)) >= 6  # not the file's head reordered: a draw from the whole split


def test_packing_loses_and_duplicates_no_token(tokenizer, records):
    stream = make_stream(tokenizer, records, seed=1)
    rows = [stream.next_row() for _ in range(40)]
    tokens = [t for r in rows for t in r.tokens.tolist()]
    doc_index = [d for r in rows for d in r.doc_index.tolist()]
    assert all(len(r.tokens) == 64 for r in rows) and all((r.source_index != PAD_SOURCE).all() for r in rows)
    # Replay the documents with a fresh stream of the same seed and re-tokenise them.
    replay = make_stream(tokenizer, records, seed=1)
    expected = []
    while len(expected) < len(tokens):
        expected += replay.tokenize(replay.next_document())
    assert tokens == expected[: len(tokens)]
    # Splitting at EOS gives back whole documents, each with one document index.
    eos = tokenizer.eos_token_id
    start = 0
    for i, t in enumerate(tokens):
        if t == eos:
            assert len(set(doc_index[start:i + 1])) == 1
            start = i + 1
    # Every row lists exactly the documents whose tokens it holds.
    for r in rows:
        assert [d.index for d in r.docs] == sorted(set(r.doc_index.tolist()))


def test_only_last_partial_row_of_a_finite_stream_is_padded(tokenizer, records):
    val = MixtureStream(DataConfig(seq_len=512, mixture={"orca_math": 1.0}), tokenizer, split="val",
                        repeat=False, records=records)
    rows = list(val)
    padded = [(r.source_index == PAD_SOURCE).sum().item() for r in rows]
    assert all(p == 0 for p in padded[:-1]) and 0 <= padded[-1] < 512
    assert val.docs_per_source["orca_math"] > 50


def test_stream_resumes_exactly(tokenizer, records):
    stream = make_stream(tokenizer, records, seed=7, shuffle_buffer=20)
    for _ in range(37):
        stream.next_row()
    state = json.loads(json.dumps(stream.state_dict()))  # must survive JSON
    expected = [stream.next_row() for _ in range(25)]
    resumed = make_stream(tokenizer, records, seed=7, shuffle_buffer=20)
    resumed.load_state_dict(state)
    got = [resumed.next_row() for _ in range(25)]
    for a, b in zip(expected, got):
        assert a.tokens.equal(b.tokens) and a.doc_index.equal(b.doc_index) and a.source_index.equal(b.source_index)
        assert [d.uid for d in a.docs] == [d.uid for d in b.docs]
    assert resumed.stats() == stream.stats()


def same_rows(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.tokens.equal(y.tokens) and x.doc_index.equal(y.doc_index) and x.source_index.equal(y.source_index)
        assert [d.uid for d in x.docs] == [d.uid for d in y.docs]


def test_prefetched_rows_and_state_are_the_plain_streams_however_far_ahead_the_worker_is(tokenizer, records):
    plain = make_stream(tokenizer, records, seed=7)
    ahead = PrefetchedStream(make_stream(tokenizer, records, seed=7), depth=8)
    same_rows([plain.next_row() for _ in range(30)], [ahead.next_row() for _ in range(30)])
    time.sleep(1)  # the worker packs ahead meanwhile …
    state = json.loads(json.dumps(ahead.state_dict()))  # … and the state is still the one after row 30
    assert state == json.loads(json.dumps(plain.state_dict()))
    assert ahead.stats() == {**plain.stats(), "worker_restarts": 0}
    expected = [plain.next_row() for _ in range(20)]
    ahead.close()
    resumed = PrefetchedStream(make_stream(tokenizer, records, seed=7), depth=8)  # a resume from that state
    resumed.load_state_dict(state)
    same_rows(expected, [resumed.next_row() for _ in range(20)])
    resumed.close()


def test_a_finite_prefetched_stream_ends_and_an_error_in_the_thread_reaches_the_caller(tokenizer, records):
    def val_stream():
        return MixtureStream(DataConfig(seq_len=64), tokenizer, "val", repeat=False, records=records)

    ahead = PrefetchedStream(val_stream(), depth=4)
    same_rows(list(val_stream()), list(iter(ahead.next_row, None)))
    assert ahead.next_row() is None  # and stays ended
    broken = make_stream(tokenizer, records)
    broken.tokenize = lambda doc: (_ for _ in ()).throw(ValueError("bad document"))
    with pytest.raises(ValueError, match="bad document"):
        PrefetchedStream(broken, depth=4).next_row()


def test_the_prefetch_worker_outlives_group_signals_but_not_its_trainer(tmp_path):
    """torchrun/Slurm SIGTERM the whole process group: the worker must leave that to the trainer (which checkpoints
    first). A trainer killed outright must not leave its worker behind (it would hang on a full pipe for ever)."""
    script = tmp_path / "trainer.py"
    script.write_text(
        "import os, sys, time\n"
        "from chrono_membench.config import load_config\n"
        "from chrono_membench.data import MixtureStream, prefetched\n"
        "from chrono_membench.model import load_tokenizer\n"
        "cfg = load_config('tiny')\n"
        "stream = prefetched(MixtureStream(cfg.data, load_tokenizer(cfg.model)), 8)\n"
        "stream.next_row()\n"
        "print(stream._chunks._workers[0].pid, flush=True)\n"
        "time.sleep(60)\n")
    trainer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    worker = int(trainer.stdout.readline())
    os.killpg(trainer.pid, signal.SIGTERM)  # what torchrun does to a rank; the trainer has no handler here and dies
    trainer.wait(timeout=30)
    deadline = time.time() + 10
    while os.path.exists(f"/proc/{worker}") and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{worker}")  # gone with its trainer (PR_SET_PDEATHSIG), not orphaned

    trainer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    worker = int(trainer.stdout.readline())
    os.kill(worker, signal.SIGTERM)  # a group signal reaching the worker alone: ignored
    time.sleep(1)
    assert os.path.exists(f"/proc/{worker}") and trainer.poll() is None
    trainer.kill()
    trainer.wait()


def test_each_epoch_is_a_fresh_permutation_of_the_whole_file(tokenizer, records):
    """Local/sample sources: every document once per epoch, in a new order each epoch, unrelated to file order
    (a shuffle buffer would leave each stretch of training a contiguous stretch of the file)."""
    stream = make_stream(tokenizer, records, mixture={"orca_math": 1.0}, seed=5)
    source = stream.sources["orca_math"]
    first = stream.next_document()
    n = len(source._all)
    epochs = [[first.key] + [stream.next_document().key for _ in range(n - 1)],
              [stream.next_document().key for _ in range(n)]]
    file_order = [key for key, _ in source._all]
    for keys in epochs:
        assert sorted(keys) == sorted(file_order)  # each document exactly once
    assert epochs[0] != epochs[1] and stream.stats()["epochs"]["orca_math"] == 1
    position = {k: i for i, k in enumerate(file_order)}
    first_tenth = [position[k] for k in epochs[0][: n // 10]]
    assert max(first_tenth) - min(first_tenth) > 0.8 * n  # the first tenth of training spans the whole file
    # Resume mid-epoch: the same permutation continues.
    stream = make_stream(tokenizer, records, mixture={"orca_math": 1.0}, seed=5)
    for _ in range(n // 2):
        stream.next_document()
    state = json.loads(json.dumps(stream.state_dict()))
    resumed = make_stream(tokenizer, records, mixture={"orca_math": 1.0}, seed=5)
    resumed.load_state_dict(state)
    assert [resumed.next_document().key for _ in range(n)] == [stream.next_document().key for _ in range(n)]


def test_a_resume_from_the_first_row_keeps_the_file_sources_counts(tokenizer):
    """A step-0 checkpoint holds a stream that has read nothing yet; the counts a file source makes when it reads
    its file on resume are the file's, not the saved zeros (data/other_split_fraction was logged as 0.0)."""
    from helpers import tiny

    cfg = tiny().data
    stream = MixtureStream(cfg, tokenizer)
    state = stream.state_dict()
    expected = [stream.next_row() for _ in range(6)]
    resumed = MixtureStream(cfg, tokenizer)
    resumed.load_state_dict(state)
    same_rows(expected, [resumed.next_row() for _ in range(6)])
    assert resumed.stats() == stream.stats() and stream.stats()["other_split_fraction"] > 0


def test_a_worker_killed_halfway_through_a_chunk_is_replaced_and_the_rows_go_on(tokenizer):
    """Chunks of 8 rows × 1,024 tokens are larger than a pipe's buffer: a worker packing ahead blocks halfway through
    sending one, and a kill -9 then leaves half a message that a read would wait on for ever. The next row comes
    from a new worker started at the state after the last row handed out, so the rows are the plain stream's."""
    import dataclasses

    from helpers import tiny

    from chrono_membench.data.prefetch import WorkerDied, _on_sigchld

    cfg = dataclasses.replace(tiny().data, seq_len=1024)
    plain, ahead = MixtureStream(cfg, tokenizer), PrefetchedStream(MixtureStream(cfg, tokenizer), depth=8)
    expected = [plain.next_row() for _ in range(30)]
    got = [ahead.next_row() for _ in range(4)]
    time.sleep(1.0)  # the worker fills the pipe and blocks mid-chunk
    worker = ahead._chunks._workers[0]
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()
    ahead._fetching = True  # had the trainer been waiting on it, the SIGCHLD handler would interrupt the wait
    with pytest.raises(WorkerDied):
        _on_sigchld(signal.SIGCHLD, None)
    ahead._fetching = False
    got += [ahead.next_row() for _ in range(26)]
    same_rows(expected, got)
    assert ahead.restarts == 1 and ahead.stats()["worker_restarts"] == 1
    ahead.close()


def test_a_stopped_worker_is_detected_within_its_timeout_and_replaced_and_the_rows_go_on(tokenizer):
    """kill -STOP of the worker (a deadlock's stand-in): once its packed-ahead rows are used up the trainer would wait
    for ever. After data.worker_timeout_s the worker is killed and a new one starts from the state after the last
    row handed out: the rows are the plain stream's, and the wait is bounded."""
    import dataclasses

    from helpers import tiny

    cfg = dataclasses.replace(tiny().data, seq_len=256, worker_timeout_s=3.0)
    plain, ahead = MixtureStream(cfg, tokenizer), PrefetchedStream(MixtureStream(cfg, tokenizer), depth=8)
    expected = [plain.next_row() for _ in range(40)]
    got = [ahead.next_row() for _ in range(4)]
    worker = ahead._chunks._workers[0]
    os.kill(worker.pid, signal.SIGSTOP)
    start = time.monotonic()
    with pytest.warns(UserWarning, match="data worker died or stuck .*timed out after 3"):
        got += [ahead.next_row() for _ in range(36)]
    assert time.monotonic() - start < 3.0 + 30  # the timeout, a new worker's start, and the orderly stop's 5 s
    same_rows(expected, got)
    assert ahead.restarts == 1 and not worker.is_alive()
    ahead.close()


def test_starting_the_worker_leaves_the_global_torch_rng_alone(tokenizer):
    from helpers import tiny

    torch.manual_seed(0)
    before = torch.get_rng_state()
    ahead = PrefetchedStream(MixtureStream(tiny().data, tokenizer), depth=8)
    ahead.next_row()
    assert torch.equal(torch.get_rng_state(), before)
    ahead.close()
