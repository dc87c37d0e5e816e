"""The diversity regulariser's pattern rows, taken inside the fast attention kernel, equal the model's full eager
pattern at those rows — values and the gradients the regulariser sends back — for the tiny model, the demo model's
shape (SmolLM2-135M: 9 heads sharing 3 key/value heads) and Gemma 2's attention (logit softcapping, sliding window,
the eager kernel)."""

import copy

import pytest
import torch

from chrono_membench import attention_rows
from chrono_membench.chrono.attention import head_js_diversity
from chrono_membench import hooks
from chrono_membench.evaluation import diversity_term


def _config(kind, vocab):
    from transformers import Gemma2Config, LlamaConfig

    if kind == "smollm2-135m":  # HuggingFaceTB/SmolLM2-135M's attention shape, 2 of its 30 layers
        return LlamaConfig(vocab_size=vocab, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                           num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, tie_word_embeddings=True)
    if kind == "gemma-2":  # Gemma 2's attention: softcapping, local (sliding) and global layers; small widths
        return Gemma2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=12,
                            attn_logit_softcapping=0.5, query_pre_attn_scalar=16)  # a cap that bites
    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4)


def _eager_twin(hf_model):
    twin = copy.deepcopy(hf_model)
    for config in {id(m.config): m.config for m in twin.modules() if hasattr(m, "config")}.values():
        config._attn_implementation = "eager"
    return twin


@pytest.mark.parametrize("kind", ["tiny", "smollm2-135m", "gemma-2"])
def test_sampled_rows_and_their_gradients_equal_the_full_eager_pattern(kind):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    kernel = "eager" if kind == "gemma-2" else "sdpa"  # Gemma 2 has no SDPA in HF (softcapping): wrap its eager
    model = AutoModelForCausalLM.from_config(_config(kind, 512), attn_implementation=kernel).float()
    reference = _eager_twin(model)
    attention_rows.install(model)
    assert model.config._attn_implementation.startswith("chrono_")
    T = 40
    tokens = torch.randint(0, 512, (2, T))
    valid = torch.ones(2, T, dtype=torch.bool)
    valid[1, 33:] = False  # padding at the end of a row: no mass, no weight
    source_index = torch.where(valid, 0, -1)
    queries = torch.tensor([0, 3, 11, 12, 25, 39, 34])

    with attention_rows.capture(queries) as rows:
        logits = model(tokens).logits
    full = reference(tokens, output_attentions=True)
    torch.testing.assert_close(logits, full.logits, rtol=1e-4, atol=1e-4)  # same outputs as the eager model
    assert len(rows) == model.config.num_hidden_layers
    for r, p in zip(rows, full.attentions):
        assert r.shape == (2, model.config.num_attention_heads, len(queries), T)
        torch.testing.assert_close(r, p[:, :, queries].float(), rtol=1e-5, atol=1e-6)

    ours = diversity_term(rows, queries, source_index)
    valid_mask = source_index != -1
    theirs = torch.stack([head_js_diversity(p, queries, valid_mask) for p in full.attentions]).mean()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours.backward()
    theirs.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    ref_grads = dict(reference.named_parameters())
    attention_grads = [n for n in grads if any(s in n for s in ("q_proj", "k_proj"))]
    assert len(attention_grads) == 2 * model.config.num_hidden_layers  # the term reaches queries and keys
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name].grad, rtol=1e-4, atol=1e-7, msg=name)


def test_the_bridges_training_forward_keeps_its_fast_path_and_matches_hook_pattern():
    """Through the TransformerBridge, as train.py calls it: no hook inside the attention (the HF kernel runs), and
    the rows equal what the bridge's own hook_pattern reconstruction gives."""
    from chrono_membench.config import load_config
    from chrono_membench.model import load_model

    model, _ = load_model(load_config("tiny").model)
    tokens = torch.randint(0, 1000, (2, 48))
    queries = torch.tensor([0, 7, 47, 20])
    hf_calls = []  # the HF attention module runs only on the fast path (the bridge's reconstruction bypasses it)
    handle = model.blocks[0].attn.original_component.register_forward_hook(lambda *a: hf_calls.append(1))
    with attention_rows.capture(queries) as rows:
        logits = model(tokens)
    assert hf_calls == [1]
    patterns = []
    with hooks.attached(model, {n: lambda t, hook: patterns.append(t) for n in hooks.pattern_names(2)}):
        hooked = model(tokens)
    handle.remove()
    assert hf_calls == [1]  # hooking hook_pattern took the bridge's eager path
    torch.testing.assert_close(logits, hooked, rtol=1e-4, atol=1e-5)
    for r, p in zip(rows, patterns):
        torch.testing.assert_close(r, p[:, :, queries].float(), rtol=1e-5, atol=1e-6)


def test_capture_is_not_reentrant_and_is_empty_outside():
    with attention_rows.capture(torch.tensor([1])):
        with pytest.raises(RuntimeError, match="already open"):
            with attention_rows.capture(torch.tensor([2])):
                pass
    assert not attention_rows._capture


def test_a_kernel_the_wrapper_cannot_read_is_refused_by_name():
    from transformers import AutoModelForCausalLM

    from chrono_membench.errors import ConfigError

    model = AutoModelForCausalLM.from_config(_config("tiny", 64), attn_implementation="sdpa")
    with pytest.raises(ConfigError, match="chrono.diversity_weight"):
        attention_rows.require(model)  # not installed yet: the plain kernel
    attention_rows.install(model)
    attention_rows.require(model)


def test_diversity_share_is_measured_on_the_accumulated_update_and_sets_mu_to_steer_that_share():
    """chrono.diversity_share: over an update of two micro-batches, DiversityShare reads the share μ · ‖∇D‖ / ‖∇CE‖
    of the q/k gradient the optimiser takes (accumulated, one partial backward of D per micro-batch, ∇CE off .grad),
    and the μ it sets makes that share exactly ρ — checked against separate CE and D backwards of the same
    micro-batches, accumulated by hand."""
    from transformers import AutoModelForCausalLM

    from chrono_membench.evaluation import DiversityShare, lm_loss, qk_parameters

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config("smollm2-135m", 512), attn_implementation="sdpa").float()
    attention_rows.install(model)
    qk = qk_parameters(model)
    assert len(qk) == 4 and all(p.dim() == 2 for p in qk)  # q_proj and k_proj of 2 layers (no biases here)
    micro = [(torch.randint(0, 512, (2, 40)), torch.zeros(2, 40, dtype=torch.long)) for _ in range(2)]
    queries = torch.arange(8, 40, 4)

    def terms(tokens, sources):
        with attention_rows.capture(queries) as rows:
            loss = lm_loss(model(tokens).logits, tokens, sources)
        return loss, diversity_term(rows, queries, sources)

    def update(mu, shares=None, share=0.2):  # the loop: (CE − μ D) / 2 backpropagated per micro-batch, into .grad
        model.zero_grad(set_to_none=True)
        for tokens, sources in micro:
            loss, diversity = terms(tokens, sources)
            if shares is not None:
                shares.add(diversity, 1 / len(micro))
            ((loss - mu * diversity) / len(micro)).backward()
        return shares.read(mu, share) if shares is not None else None

    def accumulated(which):  # ∇CE or ∇D alone, summed over the micro-batches by separate backwards
        model.zero_grad(set_to_none=True)
        for tokens, sources in micro:
            (terms(tokens, sources)[which] / len(micro)).backward()
        return torch.cat([p.grad.flatten() for p in qk])

    ce, div = accumulated(0), accumulated(1)
    ratio = (div.norm() / ce.norm()).item()
    realised, mu = update(0.5, DiversityShare(qk))
    assert realised == pytest.approx(0.5 * ratio, rel=1e-4)  # what μ = 0.5 steered of the update
    assert mu > 0 and mu * ratio == pytest.approx(0.2, rel=1e-4)
    # a fixed μ (share 0) is kept, and its share reported
    fixed_share, fixed_mu = update(mu, DiversityShare(qk), share=0.0)
    assert fixed_mu == mu and fixed_share == pytest.approx(mu * ratio, rel=1e-4)
