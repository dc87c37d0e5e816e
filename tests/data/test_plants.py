"""Planted documents (chrono.plant_file): the file is checked, each document lands whole at its steps, clear of the
canaries and of every probe window, and a plan that cannot fit is refused before training."""

import json

import pytest

from chrono_membench.config import ConfigError, load_config
from chrono_membench.batches import Batches
from chrono_membench.data import MixtureStream
from chrono_membench.data.plants import Plant, Plants, read_plants
from chrono_membench.probes import INSERTED_SOURCE, Canaries, ProbeSet


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("record, says", [
    ({"uid": "a", "tokens": [1, 2]}, "exactly the fields"),
    ({"uid": "a", "tokens": [], "steps": [1]}, "tokens must be"),
    ({"uid": "a", "tokens": [1], "steps": [0]}, "1-based"),
    ({"uid": "a", "tokens": [1], "steps": ["x"]}, "steps must be"),
])
def test_a_bad_plant_line_is_refused_with_the_line_and_field(tmp_path, record, says):
    path = write(tmp_path / "plants.jsonl", [{"uid": "ok", "tokens": [5], "steps": [2]}, record])
    with pytest.raises(ConfigError, match=f"line 2.*{says}"):
        read_plants(path)
    with pytest.raises(ConfigError, match="line 2"):  # at config time, before any heavy work
        load_config("tiny", overrides=[f"chrono.plant_file={path}"])
    with pytest.raises(ConfigError, match="no such file"):
        load_config("tiny", overrides=[f"chrono.plant_file={tmp_path / 'missing.jsonl'}"])


def test_placement_fills_the_emptiest_rows_after_the_canaries_and_refuses_what_cannot_fit():
    plants = [Plant("a", [7] * 30, [1, 1]), Plant("b", [8] * 50, [1, 2]), Plant("c", [9] * 20, [2])]
    placed = Plants(plants, max_steps=2, rows=2, grad_accum=2, seq_len=64, reserved=lambda s: [10, 0]).placements
    at_1 = sorted((m, r, o, i) for m, spots in placed[1].items() for r, o, i in spots)
    assert at_1 == [(0, 1, 0, 1), (1, 0, 0, 0), (1, 1, 0, 0)]  # b first (largest), then a twice; row (0, 0) has canaries
    assert sorted((m, r, o, i) for m, spots in placed[2].items() for r, o, i in spots) == [(0, 1, 0, 1), (1, 0, 0, 2)]
    with pytest.raises(ConfigError, match="step 1 do not fit"):
        Plants([Plant("x", [1] * 40, [1, 1, 1])], 2, rows=1, grad_accum=2, seq_len=64, reserved=lambda s: [0])
    with pytest.raises(ConfigError, match="after the last"):
        Plants([Plant("x", [1], [3])], 2, rows=1, grad_accum=1, seq_len=64, reserved=lambda s: [0])


def test_planted_documents_are_trained_at_their_steps_and_never_in_a_probe_window(tmp_path, tokenizer):
    doc = tokenizer("def planted(x):\n    return x * 42  # the planted document", add_special_tokens=False)["input_ids"]
    path = write(tmp_path / "plants.jsonl", [{"uid": "p", "tokens": doc, "steps": [2, 3, 3]}])
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[2]", "chrono.canary_until=1",
                                         f"chrono.plant_file={path}", "data.seq_len=128"])
    canaries = Canaries(cfg, tokenizer, 0)
    probes = ProbeSet(2, 50, cfg.train.max_steps, 0, tokenizer.decode)
    batches = Batches(MixtureStream(cfg.data, tokenizer), cfg.train.micro_batch, probes, canaries,
                      plants=Plants.for_run(cfg, canaries, 1))
    def where(rows, seq):
        return [(r, o) for r, row in enumerate(rows) for o in range(len(row)) if row[o:o + len(seq)] == seq]

    found = {}
    for step in range(1, 5):
        for micro in range(cfg.train.grad_accum):
            batch = batches.next(step, micro)
            rows, sources = batch["tokens"].tolist(), batch["source_index"]
            spots = where(rows, doc)
            found[step] = found.get(step, 0) + len(spots)
            assert all((sources[r, o:o + len(doc)] == INSERTED_SOURCE).all() for r, o in spots)
            if micro == 0:  # the canaries of the step are intact beside the plants
                assert all(where(rows, canaries.sequence(i)) for i in canaries.schedule.get(step, []))
    assert found == {1: 0, 2: 1, 3: 2, 4: 0}  # exactly at its steps, as many times as listed
    windows = [p.tokens for b in probes.buckets for p in b]
    assert windows and not any(w[o:o + 8] == doc[:8] for w in windows for o in range(len(w)))
