"""The probe set (training-context windows, reservoir per time bucket, exact resume) and the canary schedule."""

import zlib
from collections import Counter

import numpy as np
import pytest
import torch

from chrono_membench.config import ConfigError, load_config
from chrono_membench.probes import INSERTED_SOURCE, PREFIX_TOKENS, PROBE_TOKENS, Canaries, ProbeSet, quotas, window_start

T = 256


def decode(ids):
    return " ".join(map(str, ids))


def offer_doc(probes, i, step, start=0, end=T):
    """Document i fills [start, end) of a fresh row of tokens 1000·i + position."""
    tokens = torch.arange(T) + 1000 * i
    return probes.offer(f"doc{i}", "fineweb_edu", step, i, tokens, torch.zeros(T, dtype=torch.long), start, end)


def test_window_lies_in_one_row_scored_in_the_document_clear_of_canaries():
    rng = np.random.default_rng(0)
    sources = torch.zeros(T, dtype=torch.long)
    for _ in range(200):
        s = window_start(100, 180, sources, rng)
        assert 100 <= s and s + 32 <= 180 and s - 32 >= 0
    assert window_start(0, 63, sources, rng) is None  # the scored half cannot start before row position 32
    assert window_start(0, 64, sources, rng) == 32  # the document fills the row start: the only window
    assert window_start(150, 181, sources, rng) is None  # 31 tokens of the document: none
    sources[:40] = INSERTED_SOURCE  # a canary at the row start: no window may overlap it
    assert all(window_start(0, T, sources, rng) - PREFIX_TOKENS >= 40 for _ in range(100))


def test_probe_prefix_is_what_preceded_it_in_its_training_row():
    probes = ProbeSet(2, 4, 10, seed=0, decode=decode)
    tokens = torch.arange(T) * 7
    assert probes.offer("d", "wikitext103", 3, 5, tokens, torch.zeros(T, dtype=torch.long), 120, 200)
    p = probes.buckets[0][0]
    assert (p.step, p.row) == (3, 5) and len(p.tokens) == PROBE_TOKENS
    assert p.tokens == tokens[p.offset:p.offset + PROBE_TOKENS].tolist()  # the exact training context
    assert p.offset + PREFIX_TOKENS >= 120  # the scored half is the document's; the prefix may start before it
    # MIMIR's zlib score divides by the zlib-compressed size of the scored text
    assert p.zlib_bytes == len(zlib.compress(decode(p.tokens[PREFIX_TOKENS:]).encode())) and p.ref_loss is None


def test_reservoir_keeps_k_per_bucket_and_resumes_exactly():
    steps = [s for s in range(1, 101) for _ in range(7)]
    a = ProbeSet(n_buckets=4, per_bucket=5, max_steps=100, seed=3, decode=decode)
    for i, step in enumerate(steps):
        offer_doc(a, i, step)
    assert [len(b) for b in a.buckets] == [5, 5, 5, 5] and a.offered == [{"*": 175}] * 4  # one stratum: no mixture
    assert all(a.bucket_of(p.step) == b for b, ps in enumerate(a.buckets) for p in ps)
    short = ProbeSet(4, 5, 100, 0, decode)
    assert not offer_doc(short, 0, 1, 200, 230) and short.offered == [{"*": 0}] * 4  # no eligible window
    # Stop half-way, save, restore into a fresh set, continue: same reservoir (and windows) as uninterrupted.
    b = ProbeSet(4, 5, 100, seed=3, decode=decode)
    for i, step in enumerate(steps[:300]):
        offer_doc(b, i, step)
    c = ProbeSet(4, 5, 100, seed=99, decode=decode)
    c.load_state_dict(b.state_dict())
    for i, step in enumerate(steps[300:], start=300):
        offer_doc(c, i, step)
    assert c.state_dict()["buckets"] == a.state_dict()["buckets"]
    # Reservoir sampling is uniform: over many seeds each of 20 documents is kept about K/20 of the time.
    kept = np.zeros(20)
    for seed in range(400):
        r = ProbeSet(1, 5, 10, seed, decode)
        for i in range(20):
            offer_doc(r, i, 1)
        kept[[int(p.uid[3:]) for p in r.buckets[0]]] += 1
    assert np.allclose(kept / 400, 5 / 20, atol=0.08)


def test_canaries_start_after_warmup_end_together_with_controls(tokenizer):
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[1, 4]", "train.max_steps=20", "train.warmup_frac=0.2",
                                         "chrono.canary_length=5", "chrono.canary_per_count=2", "chrono.canary_controls=8"])
    c = Canaries(cfg, tokenizer, seed=0)
    assert c.labels() == ["1", "4", "control"] and c.cells.count("control") == 8 and len(c.secrets) == 12
    steps_of = {i: [s for s, ids in c.schedule.items() if i in ids] for i in range(len(c.cells))}
    for i, cell in enumerate(c.cells):
        assert len(steps_of[i]) == (0 if cell == "control" else int(cell))
        if cell != "control":
            assert min(steps_of[i]) >= 5 and max(steps_of[i]) == 10  # after 4 warmup steps; all end at T/2
    tokens, sources = torch.zeros(2, 64, dtype=torch.long), torch.zeros(2, 64, dtype=torch.long)
    c.insert(tokens, sources, 10)  # all four inserted canaries are due at the last step: two per row
    inserted = c.schedule[10]
    for k, i in enumerate(inserted):
        seq = c.sequence(i)
        row, offset = k % 2, (k // 2) * len(seq)
        assert tokens[row, offset:offset + len(seq)].tolist() == seq
        assert (sources[row, offset:offset + len(seq)] == INSERTED_SOURCE).all()
    assert len({tuple(s.tolist()) for s in c.secrets}) == len(c.secrets)  # every secret differs


def test_canary_config_that_cannot_fit_is_refused():
    with pytest.raises(ConfigError, match="chrono.canary_repetitions"):
        load_config("tiny", overrides=["chrono.canary_repetitions=[8]", "train.max_steps=8"])  # 4 steps to T/2
    with pytest.raises(ConfigError, match="chrono.canary_per_count"):
        load_config("tiny", overrides=["chrono.canary_repetitions=[1]", "chrono.canary_per_count=20"])


def test_every_column_holds_the_same_source_mix_when_the_stream_drifts():
    """Sources drift through training (A's share falls from 90 % to 10 %): each bucket still keeps the mixture's quota
    of each source (40/30/20/10 % of 10: 4, 3, 2, 1), and so does the unseen column, from validation rows."""
    from types import SimpleNamespace

    from chrono_membench.probes import quotas

    mixture = {"fineweb_edu": 0.4, "wikitext103": 0.3, "orca_math": 0.2, "bookcorpus": 0.1}
    assert quotas(10, mixture) == {"fineweb_edu": 4, "wikitext103": 3, "orca_math": 2, "bookcorpus": 1}
    assert quotas(16, mixture) == {"fineweb_edu": 6, "wikitext103": 5, "orca_math": 3, "bookcorpus": 2}
    probes = ProbeSet(n_buckets=4, per_bucket=10, max_steps=100, seed=0, decode=decode, mixture=mixture)
    rng = np.random.default_rng(0)
    names = list(mixture)
    for i in range(4000):
        step = 1 + i * 100 // 4000
        drift = 0.9 - 0.8 * step / 100  # fineweb_edu's share of the stream, the rest shared by the others
        source = names[0] if rng.random() < drift else names[1 + rng.integers(0, 3)]
        T = 256
        tokens = torch.arange(T)
        probes.offer(f"doc{i}", source, step, i, tokens, torch.zeros(T, dtype=torch.long), 0, T)
    for bucket in probes.buckets:
        assert {s: sum(p.source == s for p in bucket) for s in names} == quotas(10, mixture)
    docs = [SimpleNamespace(uid=f"v{i}", source=names[i % 4]) for i in range(40)]
    row = SimpleNamespace(docs=docs, tokens=torch.arange(256), source_index=torch.zeros(256, dtype=torch.long),
                          span=lambda doc: (0, 256))
    probes.fill_unseen([row])
    assert {s: sum(p.source == s for p in probes.unseen) for s in names} == quotas(10, mixture)


def test_unseen_windows_come_from_a_repeating_validation_stream_that_stops_when_short_sources_run_out():
    """The unseen windows' contexts are validation rows packed like training rows, which never run out of a source:
    the stream repeats, each document gives one window at most, and the fill stops once every source has its quota
    or has offered all its documents (the synthetic sample's FineWeb is short of 80 here)."""
    from chrono_membench.model import load_tokenizer

    cfg = load_config("tiny", overrides=["chrono.probe_per_bucket=200"])
    probes = ProbeSet.for_run(cfg, load_tokenizer(cfg.model))
    got, want = Counter(p.source for p in probes.unseen), quotas(200, cfg.data.mixture)
    assert all(got[s] <= want[s] for s in want) and got["fineweb_edu"] < want["fineweb_edu"]
    assert got["wikitext103"] == want["wikitext103"] and len({p.uid for p in probes.unseen}) == len(probes.unseen)
