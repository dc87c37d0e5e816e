"""The eval metric registry: a metric registered here, in a test, is computed at every eval, logged to
metrics.jsonl, drawn in a wandb panel and counted by plan.py's storage arithmetic, without editing any module."""

import pytest
import torch
from helpers import HOOK, tiny, train_tiny

from chrono_membench import metric_keys as K
from chrono_membench.panels import eval_panels
from studies.plan import storage_plan
from chrono_membench.registry import REGISTRY, EvalContext, KeySpace, eval_keys, register, unregister

TOY = "mem/toy/seen_windows"
GRAD_ENABLED: list[bool] = []  # whether autograd was on each time the toy metric ran


@pytest.fixture
def toy_metric():
    """A toy metric on the probe set: how many training windows have been seen so far (it grows through time)."""
    GRAD_ENABLED.clear()

    @register("toy", keys=lambda space: [TOY] if space.buckets else [], needs="windows")
    def toy(ctx: EvalContext) -> dict[str, float]:
        GRAD_ENABLED.append(torch.is_grad_enabled())
        return {TOY: float(len(ctx.seen.entries))}
    yield toy
    unregister("toy")


def test_a_registered_metric_is_logged_drawn_and_counted(tmp_path, toy_metric):
    cfg = tiny()
    without = eval_keys(KeySpace.of(cfg.to_dict(), [HOOK]))
    assert TOY in without and K.eval_time("toy") in without  # the registration alone puts it in the key list
    records = train_tiny(tmp_path / "r")
    evals = [r for r in records if "time/eval_s" in r]
    values = [r[TOY] for r in evals]
    assert [r["step"] for r in evals] == [0, 4, 8] and values[0] == 0 < values[1] < values[2]
    assert all(r[K.eval_time("toy")] >= 0 for r in evals)
    assert len(GRAD_ENABLED) == 3 and not any(GRAD_ENABLED)  # evals build no autograd graph (a metric need not ask)
    # the wandb panel of the metric, from the run's history (what MetricsLogger.log_panels logs)
    panels = eval_panels(records, {}, [HOOK], 8, cfg.to_dict())
    (trace,) = panels["panels/metric/toy"].data
    assert list(trace.x) == [0, 4, 8] and list(trace.y) == values
    # plan.py's storage: one more key and its time, per eval
    with_toy = storage_plan(cfg, 64, 2, 1)["scalars"]["count"]
    unregister("toy")
    n_evals = cfg.train.max_steps // cfg.train.eval_every + 1
    assert with_toy - storage_plan(cfg, 64, 2, 1)["scalars"]["count"] == 2 * n_evals
    register("toy", keys=lambda space: [TOY])(toy_metric)  # the fixture's teardown unregisters it


def test_a_name_is_registered_once_and_must_name_a_timing_key():
    with pytest.raises(ValueError, match="already registered"):
        register("membership", keys=lambda space: [])(lambda ctx: {})
    with pytest.raises(ValueError, match="letters, digits and _"):
        register("my metric", keys=lambda space: [])
    assert list(REGISTRY)[:6] == ["canaries", "forgetting", "memorisation", "membership", "blind", "probe_saes"]


def test_the_drift_panel_fits_a_similarity_and_the_purity_panel_says_what_it_shows():
    import torch

    from chrono_membench.panels import drift_figure, purity_figure

    history = [{"step": s, K.chrono(HOOK, "hungarian_mcs"): v, K.chrono(HOOK, "hungarian_mcs_seed_baseline"): 0.4}
               for s, v in ((10, 0.9), (20, 0.95))]
    fig = drift_figure(history, [HOOK])
    assert tuple(fig.layout.yaxis.range) == (0.0, 1.02) and len(fig.data) == 2  # the seed baseline beside it
    matrix = torch.rand(600, 3) * (torch.rand(600, 1) > 0.1)
    live = int((matrix.sum(-1) > 0).sum())
    title = purity_figure(matrix, ["b0", "b1", "unseen"], HOOK, 5).layout.title.text
    assert f"the 512 purest of {live} live latents" in title and len(purity_figure(matrix, ["b0", "b1", "u"], HOOK, 5)
                                                                      .data[0].z) == 512
