"""Issue 5's hand-made cases: attention diversity, purity, reservoir sampling, extraction, exposure."""

import math

import numpy as np
import pytest
import torch

from chrono_membench.chrono.attention import attention_entropy, head_js_diversity
from chrono_membench.chrono.membench import exposure, extraction_scores, greedy_continuation, sequence_nll
from chrono_membench.chrono.purity import (
    column_sums, mean_activation_matrix, purity_matrix, purity_summary, share_normalised,
)
from chrono_membench.config import load_config
from chrono_membench.probes import PROBE_TOKENS, Canaries, ProbeSet


def test_js_diversity_identical_heads_zero_disjoint_one_hot_one():
    p = torch.softmax(torch.randn(2, 1, 5, 7), -1)
    assert head_js_diversity(p.expand(2, 4, 5, 7)).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.zeros(1, 3, 1, 3)
    one_hot[0, 0, 0, 0] = one_hot[0, 1, 0, 1] = one_hot[0, 2, 0, 2] = 1.0
    assert head_js_diversity(one_hot).item() == pytest.approx(1.0, abs=1e-6)
    uniform = torch.full((1, 2, 3, 8), 1 / 8)
    assert attention_entropy(uniform).item() == pytest.approx(3.0)  # bits
    assert head_js_diversity(one_hot, torch.tensor([0])).item() == pytest.approx(1.0, abs=1e-6)


def test_purity_hand_made():
    # latent 0 fires only on bucket 1; latent 1 fires evenly everywhere; latent 2 never fires.
    acts = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    column = torch.tensor([0, 1, 2, 0])
    sums, counts = column_sums(acts, column, 3)
    M = mean_activation_matrix(sums, counts)
    assert M.shape == (3, 3)
    P = purity_matrix(M)
    assert P[0].tolist() == [0.0, 1.0, 0.0]
    assert P[1].tolist() == pytest.approx([1 / 3] * 3)
    assert P[2].tolist() == [0.0, 0.0, 0.0]
    only_uniform = purity_summary(P[1:2])
    assert only_uniform["mean_normalised"] == pytest.approx(0.0, abs=1e-6) and only_uniform["frac_gt50"] == 0.0
    both = purity_summary(P)  # dead latent 2 is left out
    assert both["mean_normalised"] == pytest.approx(0.5) and both["frac_gt50"] == 0.5
    # Chunked sums add up to the one-shot matrix.
    s1, c1 = column_sums(acts[:2], column[:2], 3)
    s2, c2 = column_sums(acts[2:], column[2:], 3)
    torch.testing.assert_close(mean_activation_matrix(s1 + s2, c1 + c2), M)
    # Share normalisation: equal activation on a 90 % and a 10 % source favours the rare one.
    assert share_normalised(torch.tensor([[1.0, 1.0]]), torch.tensor([0.9, 0.1]))[0].tolist() == pytest.approx([0.1, 0.9])


def test_reservoir_keeps_k_per_bucket_and_resumes_exactly():
    def offers(probes, steps):
        for i, step in enumerate(steps):
            probes.offer(f"doc{i}", "fineweb_edu", list(range(PROBE_TOKENS + i % 3)), step)

    steps = [s for s in range(1, 101) for _ in range(7)]
    a = ProbeSet(n_buckets=4, per_bucket=5, max_steps=100, seed=3)
    offers(a, steps)
    assert [len(b) for b in a.buckets] == [5, 5, 5, 5] and a.offered == [175, 175, 175, 175]
    assert all(a.bucket_of(p.first_step) == b for b, ps in enumerate(a.buckets) for p in ps)
    short = ProbeSet(4, 5, 100, 0)
    short.offer("tiny", "orca_math", [1, 2, 3], 1)
    assert short.offered == [0, 0, 0, 0]  # documents under 64 tokens never qualify
    # Stop half-way, save, restore into a fresh set, continue: same reservoir as the uninterrupted one.
    b = ProbeSet(4, 5, 100, seed=3)
    offers(b, steps[:300])
    c = ProbeSet(4, 5, 100, seed=99)
    c.load_state_dict(b.state_dict())
    for i, step in enumerate(steps[300:], start=300):
        c.offer(f"doc{i}", "fineweb_edu", list(range(PROBE_TOKENS + i % 3)), step)
    assert c.state_dict()["buckets"] == a.state_dict()["buckets"]
    # Reservoir sampling is uniform: over many seeds each of 20 documents is kept about K/20 of the time.
    kept = np.zeros(20)
    for seed in range(400):
        r = ProbeSet(1, 5, 10, seed)
        for i in range(20):
            r.offer(str(i), "fineweb_edu", list(range(PROBE_TOKENS)), 1)
        kept[[int(p.uid) for p in r.buckets[0]]] += 1
    assert np.allclose(kept / 400, 5 / 20, atol=0.08)


def copy_model(docs):
    """A model 'forced to copy': it predicts, at every position, the next token of whichever document the
    prefix belongs to."""
    table = {tuple(d[:32].tolist()): d for d in docs}

    def logits(tokens):
        out = torch.full((*tokens.shape, 1000), -10.0)
        for b, row in enumerate(tokens):
            doc = table[tuple(row[:32].tolist())]
            for t in range(tokens.shape[1]):
                if t + 1 < len(doc):
                    out[b, t, doc[t + 1]] = 10.0
        return out
    return logits


def test_exact_match_on_a_copying_model_and_on_a_random_one():
    torch.manual_seed(0)
    docs = torch.randint(0, 1000, (4, 64))
    scores = extraction_scores(copy_model(docs), docs)
    assert scores["exact_match"].tolist() == [1.0] * 4 and scores["token_match"].tolist() == [1.0] * 4
    assert (scores["loss"] < 1e-3).all()
    def random_model(tokens):
        return torch.randn(*tokens.shape, 1000, generator=torch.Generator().manual_seed(tokens.sum().item()))

    scores = extraction_scores(random_model, docs)
    assert scores["exact_match"].sum() == 0 and scores["token_match"].mean() < 0.05
    assert scores["loss"].mean() > math.log(1000) - 1


def test_greedy_continuation_appends_argmax():
    logits = lambda t: torch.nn.functional.one_hot((t + 1) % 50, 50).float()  # noqa: E731  next = current + 1
    assert greedy_continuation(logits, torch.tensor([[3, 4]]), 3).tolist() == [[5, 6, 7]]


def test_exposure():
    assert exposure(1.0, torch.tensor([2.0, 3.0, 4.0])) == 2.0  # ranks first of 4 → log2(4)
    assert exposure(5.0, torch.tensor([2.0, 3.0, 4.0])) == 0.0  # ranks last
    assert exposure(2.5, torch.tensor([2.0, 3.0, 4.0])) == pytest.approx(1.0)
    # sequence_nll gives the lowest NLL to the candidate a model that memorised the secret predicts.
    prefix, secret = torch.tensor([1, 2, 3]), torch.tensor([7, 8, 9])
    memorised = torch.cat([prefix, secret])

    def logits(tokens):  # at position t, predict memorised[t + 1]
        nxt = torch.cat([memorised[1:], memorised[:1]])[: tokens.shape[1]]
        return torch.nn.functional.one_hot(nxt, 10).float().expand(len(tokens), -1, -1) * 20

    candidates = torch.stack([secret, torch.tensor([4, 4, 4]), torch.tensor([7, 8, 0]), torch.tensor([5, 6, 0])])
    nll = sequence_nll(logits, prefix, candidates)
    assert exposure(nll[0].item(), nll[1:]) == pytest.approx(2.0)  # maximal: first of 4


def test_canary_schedule_and_insertion(tokenizer):
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[1, 4]", "train.max_steps=20", "chrono.canary_length=5"])
    c = Canaries(cfg, tokenizer, seed=0)
    assert sum(len(v) for v in c.schedule.values()) == 5 and c.labels() == ["1", "4", "control"]
    assert max(c.schedule) <= 10  # the first half of training
    assert c.schedule[1] == [0, 1]  # both start at step 1: one canary per row
    tokens, sources = torch.zeros(2, 64, dtype=torch.long), torch.zeros(2, 64, dtype=torch.long)
    c.insert(tokens, sources, 1)
    for row in (0, 1):
        seq = c.sequence(row)
        assert tokens[row, :len(seq)].tolist() == seq and (sources[row, :len(seq)] == 4).all()
        assert (tokens[row, len(seq):] == 0).all()
    assert not torch.equal(c.secrets[0], c.secrets[2])  # the control differs from the inserted ones
