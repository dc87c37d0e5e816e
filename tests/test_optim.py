"""The LM's optimisers and schedule: the LR multiplier's shape, and a loss that falls under them."""

import pytest
import torch
from helpers import tiny

from chrono_membench import optim
from chrono_membench.evaluation import lm_loss
from chrono_membench.model import load_model


def test_lr_schedule_values():
    f = lambda s: optim.lr_multiplier(s, 100, 0.05, 0.2, 0.1)  # noqa: E731
    assert f(0) == pytest.approx(1 / 5) and f(4) == pytest.approx(1.0)  # warmup over 5 steps
    assert f(50) == 1.0 and f(79) == 1.0  # constant
    assert f(80) == pytest.approx(1.0)  # warmdown starts at 1
    assert f(90) == pytest.approx(0.1 + 0.9 * 10 / 20)
    assert f(99) == pytest.approx(0.1 + 0.9 / 20)  # → final_lr_frac
    assert all(f(s) >= f(s + 1) for s in range(4, 99))


def test_loss_falls_on_a_repeated_batch():
    cfg = tiny()
    model, tok = load_model(cfg.model)
    (opt,) = optim.build_optimizers(model.original_model, cfg)
    tokens = tok(["The river Seine flows through Paris."] * 2, return_tensors="pt").input_ids
    src = torch.zeros_like(tokens)
    first = None
    for _ in range(30):
        loss = lm_loss(model(tokens), tokens, src)
        loss.backward()
        opt.step()
        opt.zero_grad()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first
