"""Model loading helpers: the ``auto`` dtype picks bfloat16 only where the hardware runs it natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rankwise.config.models import fast_bfloat16, resolve_dtype, resolve_model
from rankwise.errors import RankwiseError


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_follows_the_cpu_bf16_support(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert fast_bfloat16("cpu") is native
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16  # an explicit dtype is kept as asked


def test_auto_dtype_is_float32_when_the_cpu_check_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> bool:
        raise RuntimeError("no oneDNN")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", missing)
    assert resolve_dtype("auto", "cpu") == torch.float32


def test_unknown_dtype_names_the_choices() -> None:
    with pytest.raises(RankwiseError, match=r"'half8'.*'auto'.*bfloat16"):
        resolve_dtype("half8")


def test_rankrag_training_defaults_to_auto() -> None:
    from rankwise.config.rankrag_train import RankRAGTrainConfig

    assert RankRAGTrainConfig(output_dir="x", blend_path="b.jsonl").dtype == "auto"


def test_a_folder_with_one_gguf_and_no_config_resolves_to_that_file(tmp_path: Path) -> None:
    # what a trainer checkpoint of the bundled GGUF SmolLM2 names as its base (the package folder)
    (tmp_path / "Model.Q4_1.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(tmp_path)) == (str(tmp_path), "Model.Q4_1.gguf")
    (tmp_path / "config.json").write_text("{}")  # a plain checkpoint folder is left to from_pretrained
    assert resolve_model(str(tmp_path)) == (str(tmp_path), None)


def test_a_causal_lm_goes_where_default_device_says_when_none_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a GPU machine the generator and the P(True) reranker stayed on the CPU (and in bf16 under dtype auto,
    # picked for the GPU). "meta" stands in for "cuda" here: a device this CPU-only test can move a model to.
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    import rankwise.config.models as models

    model_dir = tmp_path / "lm"
    vocab_file = str(tmp_path / "tokenizer.json")
    Tokenizer(WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(vocab_file)
    PreTrainedTokenizerFast(tokenizer_file=vocab_file, eos_token="[UNK]").save_pretrained(model_dir)
    config = LlamaConfig(vocab_size=2, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    monkeypatch.setattr(models, "default_device", lambda: "meta")
    model, _ = models.load_causal_lm(str(model_dir))
    assert next(model.parameters()).device.type == "meta"
    model, _ = models.load_causal_lm(str(model_dir), device="cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_default_device_is_the_gpu_where_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from rankwise.config.models import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() is None
