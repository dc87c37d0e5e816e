"""Global batches: the seen log (first, last, exposures), probe offers, canaries, and this rank's rows."""

import torch

from chrono_membench.config import load_config
from chrono_membench.batches import Batches, SeenLog
from chrono_membench.data import MixtureStream
from chrono_membench.distributed import Dist
from chrono_membench.probes import Canaries, ProbeSet


def test_seen_log_counts_exposures_not_rows():
    log = SeenLog()
    assert log.record("a", stream_index=0, step=1)  # first sight
    assert not log.record("a", stream_index=0, step=1)  # the same occurrence continuing into the next row
    log.record("b", 1, 2)
    assert not log.record("a", stream_index=5, step=3)  # a new epoch: the same document again
    assert log.entries == {"a": [1, 3, 2], "b": [2, 2, 1]}


def test_batches_bookkeep_the_global_batch_and_split_it_over_ranks(tokenizer):
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[4]", "train.max_steps=4", "chrono.canary_until=1"])
    make = lambda micro_batch, d: Batches(MixtureStream(cfg.data, tokenizer), micro_batch,  # noqa: E731
                                          ProbeSet(2, 2, 4, 0, tokenizer.decode), Canaries(cfg, tokenizer, 0), d)
    alone, ranks = make(4, Dist()), [make(2, Dist(r, 2)) for r in range(2)]
    canary = torch.tensor(alone.canaries.sequence(0))
    for step in range(1, 5):
        whole = alone.next(step, 0)
        parts = [b.next(step, 0) for b in ranks]
        for key in ("tokens", "source_index"):  # rows r, r+N, … of the same global batch, canaries included
            assert torch.equal(whole[key][0::2], parts[0][key]) and torch.equal(whole[key][1::2], parts[1][key])
        inserted = len(alone.canaries.schedule.get(step, []))  # steps 1-4, two canaries each
        assert torch.equal(whole["tokens"][0, :len(canary)], canary) == (inserted > 0)
    for b in ranks:  # every rank keeps the seen log and the probe set of the whole global batch
        assert b.seen.entries == alone.seen.entries and b.probes.state_dict() == alone.probes.state_dict()
    assert sum(len(v) for v in alone.canaries.schedule.values()) == 8  # 2 canaries (tiny), 4 insertions each
    firsts = {first for first, _, _ in alone.seen.entries.values()}
    assert 1 in firsts and firsts <= {1, 2, 3, 4}  # a long document can fill a whole step
    assert all(n >= 1 for _, _, n in alone.seen.entries.values()) and len(alone.seen) > 4


def test_n_ranks_see_exactly_what_one_process_with_n_times_the_micro_batch_sees(tokenizer):
    cfg = load_config("tiny")
    one = Batches(MixtureStream(cfg.data, tokenizer), 4)
    ranks = [Batches(MixtureStream(cfg.data, tokenizer), 2, d=Dist(r, 2)) for r in range(2)]
    for step in (1, 2):
        whole = one.next(step, 0)["tokens"]
        parts = [b.next(step, 0)["tokens"] for b in ranks]
        assert torch.equal(whole[0::2], parts[0]) and torch.equal(whole[1::2], parts[1])


def test_state_round_trips(tokenizer):
    cfg = load_config("tiny")
    a = Batches(MixtureStream(cfg.data, tokenizer), 2, ProbeSet(2, 2, 4, 0, tokenizer.decode))
    a.next(1, 0)
    b = Batches(MixtureStream(cfg.data, tokenizer), 2, ProbeSet(2, 2, 4, 0, tokenizer.decode))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.next(2, 0)["tokens"], b.next(2, 0)["tokens"])
    assert a.seen.entries == b.seen.entries and a.probes.state_dict()["buckets"] == b.probes.state_dict()["buckets"]


def test_exposure_counts_under_grad_accumulation_and_torchrun_striding(tokenizer):
    """Two ranks × 2 rows × 2 micro-batches see the seen log one process with 8 rows per step sees, and every
    document's exposure count is the number of its occurrences in the stream (past one epoch: some are 2)."""
    cfg = load_config("tiny", overrides=["data.mixture={orca_math: 1.0}"])
    one = Batches(MixtureStream(cfg.data, tokenizer), 4)
    ranks = [Batches(MixtureStream(cfg.data, tokenizer), 2, d=Dist(r, 2)) for r in range(2)]
    rows = 0
    for step in range(1, 161):
        for micro in range(2):
            one.next(step, micro)
            for b in ranks:
                b.next(step, micro)
            rows += 4
    assert all(b.seen.entries == one.seen.entries for b in ranks)
    occurrences = {}
    reference = MixtureStream(cfg.data, tokenizer)
    for _ in range(rows):
        for doc in reference.next_row().docs:
            occurrences.setdefault(doc.uid, set()).add(doc.index)
    assert {uid: len(ix) for uid, ix in occurrences.items()} == {uid: e[2] for uid, e in one.seen.entries.items()}
    assert max(e[2] for e in one.seen.entries.values()) == 2  # the second epoch began
    assert all(first <= last for first, last, _ in one.seen.entries.values())


def test_a_probe_is_the_window_exactly_as_it_was_trained(tokenizer):
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[2]", "train.max_steps=6", "data.seq_len=128",
                                         "chrono.canary_until=1"])
    probes = ProbeSet(3, 100, 6, 0, tokenizer.decode)
    b = Batches(MixtureStream(cfg.data, tokenizer), 2, probes, Canaries(cfg, tokenizer, 0), Dist(0, 2))
    trained = {}
    for step in range(1, 7):
        for micro in range(2):  # this rank's rows are 0, 2 of each global micro-batch of 4
            for k, row in enumerate(b.next(step, micro)["tokens"]):
                trained[(step, micro * 4 + 2 * k)] = row
    checked = 0
    for p in (p for bucket in probes.buckets for p in bucket):
        assert probes.bucket_of(p.step) == probes.buckets.index(next(bk for bk in probes.buckets if p in bk))
        if (p.step, p.row) in trained:
            assert trained[(p.step, p.row)][p.offset:p.offset + 64].tolist() == p.tokens
            checked += 1
    assert checked >= 5
