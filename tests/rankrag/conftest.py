"""Shared RankRAG test fixtures: a tiny random Llama with the real SmolLM2 tokenizer (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer (read once from the bundled GGUF, saved plainly)."""
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
