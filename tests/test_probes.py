"""The probe set (reservoir per time bucket, exact resume) and the canary schedule."""


import numpy as np
import torch

from chrono_membench.config import load_config
from chrono_membench.probes import PROBE_TOKENS, Canaries, ProbeSet




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
