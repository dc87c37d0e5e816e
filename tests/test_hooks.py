"""Hook points: every kind fires through the bridge, widths are measured, splicing a replacement takes effect."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from chrono_membench import hooks
from chrono_membench.config import ConfigError
from chrono_membench.data.stream import PAD_SOURCE
from chrono_membench.model import boot_bridge

KINDS = [f"blocks.1.{kind}" for kind in hooks.HOOK_KINDS]


@pytest.fixture(scope="module")
def bridge(tokenizer):
    """A tiny Llama whose heads are narrower than the residual stream: 4 heads × 8 = 32, d_model 64, MLP 96."""
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, head_dim=8, tie_word_embeddings=True,
                         architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    return boot_bridge(LlamaForCausalLM(config), tokenizer)


def test_widths_are_measured_not_assumed(bridge):
    widths = hooks.activation_widths(bridge, KINDS)
    assert widths == {**{h: 64 for h in KINDS}, "blocks.1.attn.hook_z": 32}


def test_replacing_each_kind_changes_the_output_and_capture_flattens(bridge):
    tokens = torch.randint(0, 1000, (2, 6))
    with torch.no_grad():
        clean = bridge(tokens)
        for hook in KINDS:
            # the identity splice (flatten → unflatten) leaves the logits as they are; zeroing the hook changes them
            same = bridge.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: hooks.unflatten(hooks.flatten(a), a))])
            zeroed = bridge.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: torch.zeros_like(a))])
            torch.testing.assert_close(same, clean)
            assert not torch.allclose(zeroed, clean), hook
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad(), hooks.capture(bridge, KINDS, mask) as captured:
        bridge(tokens)
    widths = hooks.activation_widths(bridge, KINDS)
    for hook in KINDS:
        assert captured[hook].tensor.shape == (9, widths[hook])  # 6 + 3 masked-in tokens


def test_bad_names_and_layers_name_the_allowed_forms():
    hooks.check_hook_points(KINDS, n_layers=2)
    for bad in ("blocks.1.hook_resid", "blocks.x.hook_resid_post", "blocks.1.attn.hook_pattern", "hook_embed"):
        with pytest.raises(ConfigError, match=f"'{bad}' is not a supported hook point; allowed: "
                                              r"blocks.<layer>.hook_resid_pre, .*blocks.<layer>.attn.hook_z"):
            hooks.check_hook_points([bad], n_layers=2)
    with pytest.raises(ConfigError, match="names layer 2, but the model has layers 0..1"):
        hooks.check_hook_points(["blocks.2.hook_mlp_out"], n_layers=2)
    with pytest.raises(ConfigError, match="twice"):
        hooks.check_hook_forms(["blocks.0.hook_mlp_out", "blocks.0.hook_mlp_out"])


def test_names_and_mask():
    assert hooks.default_hook_points(30) == ["blocks.15.hook_resid_post"]
    assert hooks.file_name("blocks.6.attn.hook_z") == "blocks_6_attn_hook_z"
    sources = torch.tensor([[0, 1, 2], [3, PAD_SOURCE, PAD_SOURCE]])
    tokens = torch.tensor([[5, 6, 2], [5, 2, 2]])
    assert hooks.token_mask(tokens, sources).tolist() == [[False, True, True], [False, False, False]]  # position 0
    assert hooks.token_mask(tokens, sources, bos_token_id=2).tolist() == [[False, True, False], [False] * 3]  # BOS


def test_capture_buffer_appends_selected_rows_grows_and_is_reused_after_clear():
    buffer = hooks.CaptureBuffer()
    a, b = torch.randn(5, 3), torch.randn(4, 3)
    buffer.append(a)
    buffer.append(b, torch.tensor([0, 2]))  # grows past its first allocation, keeping what it held
    torch.testing.assert_close(buffer.tensor, torch.cat([a, b[[0, 2]]]))
    storage = buffer.tensor.data_ptr()
    buffer.clear()
    buffer.append(b)
    assert len(buffer) == 4 and buffer.tensor.data_ptr() == storage  # the next step writes into the same memory
    torch.testing.assert_close(buffer.tensor, b)


def test_attached_fires_each_function_under_its_name_as_model_hooks_does(bridge):
    """hooks.attached (one name filter, for speed) gives each function the tensors model.hooks gives it."""
    tokens = torch.randint(0, 1000, (2, 6))
    names = [*KINDS, *hooks.pattern_names(2)]
    seen_plain, seen_attached = {}, {}
    with torch.no_grad():
        with bridge.hooks(fwd_hooks=[(n, lambda t, hook, n=n: seen_plain.setdefault(n, []).append(t)) for n in names]):
            bridge(tokens)
        with hooks.attached(bridge, {n: lambda t, hook, n=n: seen_attached.setdefault(n, []).append(t) for n in names}):
            bridge(tokens)
        bridge(tokens)  # the hooks are gone after the context: nothing more is appended
    assert list(seen_attached) == list(seen_plain) and set(seen_plain) == set(names)  # same names, same firing order
    for n in names:
        assert len(seen_attached[n]) == len(seen_plain[n]) == 1
        torch.testing.assert_close(seen_attached[n][0], seen_plain[n][0], rtol=0, atol=0)
    with pytest.raises(KeyError, match="blocks.1.hook_nope"):
        with hooks.attached(bridge, {"blocks.1.hook_nope": lambda t, hook: None}):
            pass
