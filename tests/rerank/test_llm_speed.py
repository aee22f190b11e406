"""The LLM reranker's speed paths (issue 22) keep its scores: the shared-prefix KV cache equals the plain path,
identical pairs are scored once but every pair gets its score, bf16 stays near fp32, ``auto`` never picks
emulated bf16 for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_llm_reranker import PAIRS, _tiny

from rankwise.config import precision as precision_module
from rankwise.rerank.llm import LLMReranker, shared_prefix_length

MORE = [*PAIRS, ("what do birds eat", "Seeds, insects and berries " * 6), ("q2", "Short.")]


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_shared_prefix_cache_scores_equal_the_plain_path(tokenizer, kind: str, batch_size: int) -> None:
    model = _tiny(kind, len(tokenizer))
    common = {"batch_size": batch_size, "max_passage_tokens": 32, "show_progress": False}
    cached = LLMReranker(model, tokenizer, **common)
    plain = LLMReranker(model, tokenizer, share_prefix=False, **common)
    prompts = [cached.prompt(q, p) for q, p in MORE]
    assert shared_prefix_length(tokenizer(prompts, add_special_tokens=False)["input_ids"]) > 10  # chat header
    np.testing.assert_allclose(cached.score(MORE), plain.score(MORE), atol=1e-4)


def test_shared_prefix_leaves_a_token_to_feed() -> None:
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2]]) == 1
    assert shared_prefix_length([[5, 2], [1, 2]]) == 0


def test_identical_pairs_are_scored_once_and_each_gets_its_score(tokenizer) -> None:
    model = _tiny("llama", len(tokenizer))
    reranker = LLMReranker(model, tokenizer, batch_size=16, max_passage_tokens=32, show_progress=False)
    fed: list[int] = []
    hook = model.register_forward_hook(
        lambda _module, _args, kwargs, _out: fed.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        scores = reranker.score([*MORE, *MORE, MORE[0]])
    finally:
        hook.remove()
    assert fed == [1, len(MORE)]  # the prefix once, then each distinct pair once
    alone = reranker.score(MORE)
    np.testing.assert_allclose(scores, [*alone, *alone, alone[0]], atol=1e-6)


def test_bf16_scores_stay_near_fp32(tokenizer) -> None:
    model = _tiny("llama", len(tokenizer))
    fp32 = LLMReranker(model, tokenizer, max_passage_tokens=32, show_progress=False).score(MORE)
    half = _tiny("llama", len(tokenizer)).to(torch.bfloat16)
    reranker = LLMReranker(half, tokenizer, max_passage_tokens=32, show_progress=False)
    assert reranker._head is not None  # bf16 body, the True-False margin projected in fp32
    bf16 = reranker.score(MORE)
    assert np.max(np.abs(np.array(bf16) - np.array(fp32))) < 0.02


def test_auto_llm_precision_never_picks_emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from rankwise.config.precision import llm_dtype
    from rankwise.config.sections.rerank import LLMRerankConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision_module.platform, "machine", lambda: "x86_64")
    for torch_says, flags in ((False, ("avx2",)), (True, ("avx2", "avx512f", "avx512_vnni"))):  # AVX2 / no BF16
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda says=torch_says: says)
        monkeypatch.setattr(precision_module, "cpu_flags", lambda flags=flags: flags)
        assert llm_dtype(LLMRerankConfig(precision="auto"), "llm reranker") == "float32"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: ("avx2", "avx512f", "avx512_bf16"))
    assert llm_dtype(LLMRerankConfig(precision="auto"), "llm reranker") == "bfloat16"
