"""The planted-signal validation: its checks on hand-made cases where the truth is known, and validate.py --quick
end to end on the tiny model (the machinery plants and recovers the trivially strong signals)."""

import json
import math

import numpy as np
import pytest
import torch

from chrono_membench import metric_keys as K
from chrono_membench.errors import ConfigError
from studies import planted as V
from chrono_membench.logging import final_values
from helpers import HOOK, load_script


def test_time_local_check_finds_a_latent_confined_to_the_planted_bucket_and_not_a_spread_one():
    g = torch.Generator().manual_seed(0)
    n_code, n_ordinary, F = 16, 30, 20
    is_code = torch.arange(n_code + n_ordinary) < n_code
    S = torch.rand(len(is_code), F, generator=g)  # every latent fires a little everywhere
    S[is_code, 3] += 20.0  # latent 3 fires on the Python windows
    n = torch.full((len(is_code),), 32.0)
    ordinary_buckets = torch.arange(n_ordinary) % 3
    confined = torch.cat([torch.full((n_code,), 1), ordinary_buckets])
    spread = torch.cat([torch.arange(n_code) % 3, ordinary_buckets])
    main = V.time_local("main", HOOK, S, n, confined, is_code, planted=1, k=1, main=True, generator=g)
    control = V.time_local("control", HOOK, S, n, spread, is_code, planted=1, k=1, main=False, generator=g)
    assert main.passed and "100% of top-1" in main.measured
    assert control.passed  # the same latent, its documents spread over the buckets: no concentration
    assert not V.time_local("main", HOOK, S, n, spread, is_code, 1, 1, True, g).passed


def test_source_purity_names_where_the_selected_latents_that_miss_peak():
    """A latent chosen for source 0 against the pooled rest can fire more still on one other source: the check
    fails on it and says where it peaks (a miss explains itself in the table)."""
    g = torch.Generator().manual_seed(0)
    source = torch.arange(80) // 2 % 4  # 20 windows per source; even-numbered ones choose, odd-numbered ones measure
    S = torch.rand(80, 12, generator=g)
    S[source == 0, :2] += 10.0  # latents 0 and 1: source 0's own
    S[source == 0, 2] += 6.0  # latent 2: source 0 above the pooled rest, but source 1 above source 0
    S[source == 1, 2] += 9.0
    n = torch.full((80,), 32.0)
    first = V.source_purity(HOOK, S, n, source, k=3, generator=g)[0]
    assert not first.passed and "67% of top-3 peak there (the others: wikitext103 1)" in first.measured
    S[source == 1, 2] -= 9.0  # now all three are source 0's
    first = V.source_purity(HOOK, S, n, source, k=3, generator=g)[0]
    assert first.passed and "100% of top-3 peak there;" in first.measured


def test_dose_and_forgetting_checks_pass_on_a_planted_effect_and_fail_without_one():
    rng = np.random.default_rng(1)  # seed 0's two never-inserted sets are the 1-in-20 pair whose interval misses 0.5

    def scores(shift, n=12):
        loss = rng.normal(3.0, 0.2, n) - shift
        ref_loss = loss + shift + rng.normal(0, 0.05, n)
        step0 = rng.uniform(0.0, 0.2, n)  # the step-0 model's Pythia score: the text's own predictability
        return {"loss": loss, "ref_loss": ref_loss, "ref": -(loss - ref_loss), "exact_match": np.zeros(n),
                "token_match": np.clip(step0 + shift / 4 + rng.normal(0, 0.02, n), 0, 1), "ref_token_match": step0}
    # two never-inserted sets drawn independently (a real pair fails the 95 % check about 1 time in 20)
    effect = {"never_a": scores(0), "never_b": scores(0), "x1": scores(0.3), "x4": scores(1.0), "x16": scores(2.5),
              "early": scores(0.2), "late": scores(1.0)}
    assert all(c.passed for c in V.dose_response(effect) + V.forgetting(effect))
    never_check = [c for c in V.dose_response({**effect, "never_a": scores(0.5)}) if "never vs never" in c.name]
    assert not never_check[0].passed  # two "never" sets that differ (a leak, a broken split) are flagged
    none = {k: scores(0) for k in effect}
    assert not any(c.passed for c in V.dose_response(none) if "16× vs never" in c.name)
    # content alone (a frozen LM: the same Pythia score as at step 0, more predictable text at higher doses) does
    # not pass the Pythia check, which reads the gain over step 0
    content = {k: {**v, "token_match": v["ref_token_match"] + 0.1 * i, "ref_token_match": v["ref_token_match"] + 0.1 * i}
               for i, (k, v) in enumerate(none.items())}
    assert not next(c for c in V.dose_response(content) if "Pythia" in c.name).passed
    assert not V.forgetting(none)[0].passed
    # the training-order test on the same sets: the planted recency found, the never-inserted sets its null
    # (each document's first step one of 5: the test permutes steps, so 5 + 5 distinct steps can reach p < 0.05)
    plan = {name: [V.Plant(f"{name}/{i}", [0], list(range(start + i % 5, start + i % 5 + 4))) for i in range(12)]
            for name, start in (("early", 3), ("late", 20))}
    found, null = V.training_order(effect, plan)
    assert found.passed and null.passed
    assert not V.training_order(none, plan)[0].passed
    assert not V.training_order({**effect, "never_b": scores(1.0)}, plan)[1].passed  # a "null" that differs
    small = V.training_order(effect, {k: v[:2] for k, v in plan.items()})  # 2 + 2 documents: p ≥ 0.33
    assert [(c.passed, c.measured) for c in small] == [(None, "not decidable at this size")]
    same_step = {name: [V.Plant(f"{name}/{i}", [0], [start]) for i in range(12)] for name, start in (("early", 3),
                                                                                                   ("late", 20))}
    assert V.training_order(effect, same_step)[0].passed is None  # 12 + 12 documents on 2 steps: p = 1
    # where the plant does not apply (the momentum run), the same numbers are reported without a verdict
    info = V.informational([found, *V.forgetting(none)], "β1 = 0.9")
    assert [c.passed for c in info] == [None, None] and {V.verdict(c) for c in info} == {"INFO"}
    assert info[0].measured == found.measured and "[β1 = 0.9]" in V.table(info)


def test_alignment_check_compares_the_arm_effect_with_the_seed_floor():
    def records(primary, baseline):
        return [{K.chrono(HOOK, "hungarian_mcs"): a, K.chrono(HOOK, "hungarian_mcs_seed_baseline"): b}
                for a, b in zip(primary, baseline)]
    no_alignment = records([0.80, 0.90], [0.81, 0.91])  # the two SAE seeds drift within 0.01 of each other
    assert V.alignment(HOOK, records([0.85, 0.95], [0.86, 0.96]), no_alignment).passed
    assert not V.alignment(HOOK, records([0.805, 0.905], [0.81, 0.91]), no_alignment).passed


def test_canary_check_knows_the_chance_level_of_never_inserted_secrets():
    final = {K.canary("1"): 2.0, K.canary("4"): 5.0, K.canary("16"): 7.0, K.canary("1", True): 2.1,
             K.canary("4", True): 9.0, K.canary("16", True): 40.0, K.canary("control"): 1.4,
             K.canary("1", sampled=True): 2.0, K.canary("4", sampled=True): 8.5, K.canary("16", sampled=True): 31.0}
    increasing, controls = V.canaries(final, controls=8, candidates=127)
    assert increasing.passed and controls.passed and controls.null and not increasing.null
    # the extrapolation is a model: a run whose sampled exposure does not rise fails, whatever it extrapolates
    assert not V.canaries({**final, K.canary("16", sampled=True): 8.0}, 8, 127)[0].passed
    frozen = V.frozen_arm([increasing, controls])  # the planted check repeated on a frozen LM, the null not
    assert [c.name for c in frozen] == ["canaries: exposure 1×/4×/16× (bits) [frozen LM]"] and not frozen[0].passed
    assert not V.canaries({**final, K.canary("control"): 5.0}, 8, 127)[1].passed  # controls far above chance


def test_validate_quick_plants_and_recovers_the_strong_signals(tmp_path):
    """--quick trains the tiny model's main run and its frozen-LM twin: the strong plants are found on the first
    and every planted check fails on the second; the exit status says whether every check passed."""
    validate = load_script("experiments/validate.py")
    status = validate.main(["--quick", "--out", str(tmp_path), "--no-progress"])
    checks = {c["name"]: c for c in json.loads((tmp_path / "validation.json").read_text())}
    assert status == (0 if all(c["passed"] is not False for c in checks.values()) else 1)
    assert checks["dose: AUROC (ref) 16× vs never"]["passed"]  # 16 insertions: separable from never-inserted
    frozen = {n: c for n, c in checks.items() if n.endswith("[frozen LM]")}
    assert "dose: reference score never/1×/4×/16× [frozen LM]" in frozen and "never vs never" not in " ".join(frozen)
    # an LM that never changed reads every reference score as exactly 0: the dose and AUROC checks fail there
    for name in ("dose: reference score never/1×/4×/16× [frozen LM]", "dose: AUROC (ref) 16× vs never [frozen LM]"):
        assert frozen[name]["passed"] and frozen[name]["measured"].startswith(("0 / 0", "0.500")), frozen[name]
    assert checks["order: ρ(ref score, first step), early + late"]["measured"] == "not decidable at this size"
    final = final_values(tmp_path / "main")
    assert final[K.canary("16", True)] > final[K.canary("1", True)] > final[K.canary("control", True)]
    plan = V.read_plan(tmp_path / "plan.json")
    assert sum(len(p.steps) for p in plan["x16"]) == 16 * len(plan["x16"]) and not plan["never_a"][0].steps
    table = (tmp_path / "validation.md").read_text()
    assert sum(table.count(f"| {v} |") for v in ("PASS", "FAIL", "INFO")) == len(checks)


def test_every_arm_that_plants_has_a_frozen_twin_that_differs_only_in_the_learning_rate(tmp_path):
    """validate.py's full plan: `frozen` is `main` and `recency_frozen` is `recency` with train.lr = train.muon_lr = 0
    and nothing else changed (same plants, optimiser, rows, SAEs); both configs load."""
    from chrono_membench.config import load_config

    validate = load_script("experiments/validate.py")
    for plan in ("main", "control", "recency"):
        (tmp_path / f"plants_{plan}.jsonl").write_text("")
    _, arms = validate.overrides("demo", tmp_path, quick=False, extra=[])
    assert set(arms) == set(validate.RUNS)
    for trained, frozen in (("main", "frozen"), ("recency", "recency_frozen")):
        a, b = (load_config("demo", overrides=arms[name]) for name in (trained, frozen))
        assert (b.train.lr, b.train.muon_lr) == (0, 0) and a.train.lr > 0
        differ = {k for k, v in b.to_dict()["train"].items() if a.to_dict()["train"][k] != v}
        assert differ == {"lr", "muon_lr"} and a.chrono == b.chrono and a.sae == b.sae and a.data == b.data
        assert b.run.name == frozen


def test_fdr_check_finds_a_planted_time_local_population_and_nothing_when_it_is_spread():
    """The per-latent test the evals run, on hand-made windows: 6 latents fire on the Python windows and 6 fire
    on everything but them; confined to bucket 1 they are found (b1 is their highest bucket or their lowest), spread
    over the buckets nothing is (BH's P(any) ≤ q under the null)."""
    rng = np.random.default_rng(0)
    n_code, n_ordinary, F = 24, 48, 200
    is_code = torch.arange(n_code + n_ordinary) < n_code
    S = torch.tensor(rng.exponential(1.0, (len(is_code), F)), dtype=torch.float32)  # every latent fires everywhere
    S[:n_code, :6] += 8.0
    S[n_code:, 6:12] += 8.0  # depleted where the Python windows are: Kruskal–Wallis flags these too
    n = torch.full((len(is_code),), 32.0)
    ordinary_buckets = torch.arange(n_ordinary) % 3
    confined = torch.cat([torch.full((n_code,), 1), ordinary_buckets])
    spread = torch.cat([torch.arange(n_code) % 3, ordinary_buckets])
    (found,) = V.time_local_fdr("main", HOOK, S, n, confined, planted=1, main=True)
    (control,) = V.time_local_fdr("control", HOOK, S, n, spread, planted=1, main=False)
    # the 12 planted, and here one false discovery (13 found: BH bounds the expected false share by q, not each
    # draw's); under "≥ 80 % peak in b1" (the criterion before) the depleted half would have failed it
    assert found.passed and found.measured == "13 of 200 tested; b1 is the highest of 46%, the lowest of 54%", found.measured
    from chrono_membench.chrono.selectivity import selective_latents

    assert set(range(12)) <= set(selective_latents(S.numpy(), n.numpy(), confined.numpy())["selective"].tolist())
    assert control.passed and control.measured == "0 of 200 tested"
    assert not V.time_local_fdr("main", HOOK, S, n, spread, 1, True)[0].passed  # nothing planted: fails
    assert not V.time_local_fdr("control", HOOK, S, n, confined, 1, False)[0].passed  # a leak: fails


def test_forgetting_sets_spread_over_their_span_fit_the_recency_runs_rows():
    span4, span6 = V.forget_steps(4, 4), V.forget_steps(16, 6)
    assert [span4(i) for i in range(3)] == [[4, 5, 6, 7]] * 3  # the main plan: every document on the same 4 steps
    assert [span6(i) for i in range(4)] == [[16, 17, 18, 19], [17, 18, 19, 20], [18, 19, 20, 21], [16, 17, 18, 19]]
    # the recency plan as validate.py builds it: 80 + 80 documents, ≤ 47 per step, inside the full-LR steps, and placed
    # in the recency arm's 16 rows of 256 tokens (Plants raises where a step's documents do not fit), with first steps
    # enough for the order test (which permutes them) to reach p < 0.05
    from chrono_membench.config import load_config
    from chrono_membench.data.plants import Plants
    cfg = load_config("demo", overrides=["train.grad_accum=8"])
    first, last = V.full_lr_steps(cfg)
    tokens = [0] * (V.PROBE_TOKENS + 1)  # a planted document: a probe window and EOS
    span = V.RECENCY.forget_span
    plan = {s: [V.Plant(f"{s}/{i}", tokens, f(i)) for i in range(V.RECENCY.forget)]
            for s, f in (("early", V.forget_steps(first, span)), ("late", V.forget_steps(last - span, span)))}
    steps = [s for ps in plan.values() for p in ps for s in p.steps]
    assert min(steps) == first and max(steps) == last - 1 and max(np.bincount(steps)) == 47
    k, l = (len({p.steps[0] for p in plan[s]}) for s in ("early", "late"))
    assert 2 / math.comb(k + l, k) < 0.05 and max(s for p in plan["early"] for s in p.steps) < min(
        s for p in plan["late"] for s in p.steps)
    Plants([p for ps in plan.values() for p in ps], cfg.train.max_steps, cfg.train.micro_batch, cfg.train.grad_accum,
           cfg.data.seq_len, lambda step: [0] * cfg.train.micro_batch)


def test_the_plan_is_drawn_with_the_design_seed(tmp_path):
    """validate.py plants other documents at the same steps under another run.seed: content is not tied to time
    across seeds."""
    from chrono_membench.config import load_config

    validate = load_script("experiments/validate.py")
    plans = {}
    for seed, data_seed in ((0, 0), (1, 0)):
        cfg = load_config("tiny", overrides=[f"run.seed={seed}", f"data.seed={data_seed}"])
        validate.write_plans(cfg, tmp_path / f"{seed}-{data_seed}", V.QUICK, recency=False)
        plans[seed, data_seed] = V.read_plan(tmp_path / f"{seed}-{data_seed}" / "plan.json")
    schedule = lambda plan: {s: sorted(p.steps for p in ps) for s, ps in plan.items()}  # noqa: E731
    documents = lambda plan: {s: [p.uid for p in ps] for s, ps in plan.items()}  # noqa: E731
    assert schedule(plans[0, 0]) == schedule(plans[1, 0])
    moved = [s for s in plans[0, 0] if documents(plans[0, 0])[s] != documents(plans[1, 0])[s]]
    assert set(moved) == set(plans[0, 0]), moved
    # finishing a directory's runs keeps their plan: the same seed writes it again, another is refused in one line
    validate.write_plans(load_config("tiny"), tmp_path / "0-0", V.QUICK, recency=False)
    with pytest.raises(ConfigError, match="holds another plan"):
        validate.write_plans(load_config("tiny", overrides=["run.seed=1"]), tmp_path / "0-0", V.QUICK, recency=False)
    assert V.read_plan(tmp_path / "0-0" / "plan.json") == plans[0, 0]


def test_the_recency_arms_score_losses_without_decoding():
    """The recency arms' checks (forgetting, order) read losses only: window_scores(greedy=False) decodes with
    neither model and still gives them what they read; with greedy it gives the Pythia check both models' scores."""
    torch.manual_seed(0)
    trained, step0 = (torch.nn.Embedding(50, 50) for _ in range(2))  # bigram LMs: tokens → next-token logits
    windows = {s: torch.randint(0, 50, (12, 64)) for s in ("never_a", "never_b", "early", "late")}
    logits = lambda m: (lambda tokens: m(tokens))  # noqa: E731

    def no_decoding(m):
        def generate(prefix, n):
            raise AssertionError("decoded where only losses are read")
        return generate

    scores = {s: V.window_scores(trained, step0, w, logits, no_decoding, greedy=False) for s, w in windows.items()}
    assert set(scores["early"]) == {"loss", "min_k", "ref_loss", "ref"}
    (check,) = V.forgetting(scores)
    assert "late − early" in check.measured
    greedy = lambda m: (lambda prefix, n: m(prefix)[:, -1:].argmax(-1).repeat(1, n))  # noqa: E731
    full = V.window_scores(trained, step0, windows["late"], logits, greedy)
    assert {"exact_match", "token_match", "ref_token_match"} <= set(full)
    np.testing.assert_allclose(full["ref"], scores["late"]["ref"])


def test_the_demo_plan_fits_its_runs_rows_with_the_python_family_repeated_in_one_bucket(tmp_path):
    """validate.py's demo plan as the main and control runs load it, around the run's canaries: every document fits
    (Plants raises otherwise); each Python document is inserted Sizes.code_reps times on distinct steps, all in the
    middle bucket in main, and in the control on consecutive steps whose starts cover every bucket."""
    from chrono_membench.config import load_config
    from chrono_membench.data.plants import Plants
    from chrono_membench.model import load_tokenizer
    from chrono_membench.probes import Canaries, bucket_of

    validate = load_script("experiments/validate.py")
    common, arms = validate.overrides("demo", tmp_path, quick=False, extra=[])
    cfg = load_config("demo", overrides=common)
    validate.write_plans(cfg, tmp_path, V.Sizes(), recency=False)
    plan, control = V.read_plan(tmp_path / "plan.json"), V.spread_code(cfg, V.read_plan(tmp_path / "plan.json"))
    T, B = cfg.train.max_steps, cfg.chrono.n_buckets
    for name, sets in (("main", plan), ("control", control)):
        run = load_config("demo", overrides=arms[name])
        placed = Plants.for_run(run, Canaries(run, load_tokenizer(run.model), run.run.seed), world=1)
        assert sum(len(p.steps) for p in placed.plants) == sum(len(p.steps) for ps in sets.values() for p in ps)
        code = sets["code"]
        assert len(code) == V.Sizes().code and all(len(set(p.steps)) == len(p.steps) == V.Sizes().code_reps
                                                     for p in code)
        buckets = {bucket_of(s, B, T) for p in code for s in (p.steps if name == "main" else p.steps[:1])}
        assert buckets == ({B // 2} if name == "main" else set(range(B))), (name, buckets)


def test_runs_that_cannot_be_made_are_refused_in_one_line(tmp_path, capsys):
    """--runs without main (whose plan every check but the control's and the recency arms' reads), or naming only
    runs --quick does not make: exit 2 and one line, before anything is trained."""
    validate = load_script("experiments/validate.py")
    assert validate.main(["--out", str(tmp_path / "a"), "--runs", "frozen", "control"]) == 2
    assert validate.main(["--quick", "--out", str(tmp_path / "b"), "--runs", "recency"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "the main run is needed" in lines[0] and "with --quick" in lines[1], lines
    # overrides may follow the names (the --help example): they are overrides, not runs; a misspelt run is refused
    assert validate.main(["--out", str(tmp_path / "c"), "--runs", "frozen", "run.seed=1", "data.seed=1"]) == 2
    assert "the main run is needed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        validate.main(["--out", str(tmp_path / "d"), "--runs", "mian", "run.seed=1"])
    assert refused.value.code == 2 and "mian is not a run; allowed: main, frozen" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.jsonl"))
