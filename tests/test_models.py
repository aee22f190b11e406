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
