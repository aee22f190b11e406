"""LLMReranker: P(True)/(P(True)+P(False)) from next-token logits, batching-invariant, prompts as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankwise.errors import RankwiseError
from rankwise.rerank.llm import DEFAULT_TEMPLATE, LLMReranker, format_prompt

PAIRS = [
    ("why do cats purr", "Cats purr when content."),
    ("why do cats purr", "Dogs bark at the postman every single morning, loudly, " * 4),
    ("which animals fly", "Birds."),
    ("q", "A passage of medium length about nothing in particular."),
]


def _tiny(kind: str, vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        )
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(vocab_size=vocab_size, n_layer=2, n_embd=64, n_head=2, n_positions=512)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def reranker(request, tokenizer):
    model = _tiny(request.param, len(tokenizer))
    return LLMReranker(model, tokenizer, batch_size=8, max_passage_tokens=32, show_progress=False)


def _reference(reranker: LLMReranker, question: str, passage: str) -> float:
    """The definition, one prompt at a time, no padding: softmax over the vocabulary, then renormalise."""
    (passage,) = reranker.truncate([passage])
    ids = reranker.tokenizer(reranker.prompt(question, passage), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(reranker.model(**ids).logits[0, -1].double(), dim=-1)
    p_true, p_false = probs[reranker.true_id].item(), probs[reranker.false_id].item()
    return p_true / (p_true + p_false)


def test_score_is_p_true_over_p_true_plus_p_false(reranker):
    expected = [_reference(reranker, q, p) for q, p in PAIRS]
    scores = reranker.score(PAIRS)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert all(0.0 < s < 1.0 for s in scores)
    assert np.ptp(scores) > 1e-4  # different prompts get different scores


def test_left_padded_batches_equal_one_by_one(reranker):
    one_by_one = [reranker.score([pair])[0] for pair in PAIRS]
    reranker.batch_size, reranker.max_tokens = 3, 10_000
    try:
        batched = reranker.score(PAIRS)
    finally:
        reranker.batch_size, reranker.max_tokens = 8, 4096
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_prompt_uses_chat_template_and_truncated_passage(reranker):
    long_passage = " ".join(f"word{i}" for i in range(200))
    (cut,) = reranker.truncate([long_passage])
    assert len(reranker.tokenizer.encode(cut, add_special_tokens=False)) <= 32 + 1
    assert long_passage.startswith(cut.strip()[:20])
    prompt = reranker.prompt("why do cats purr", cut)
    assert "<|im_start|>user" in prompt and prompt.rstrip().endswith("<|im_start|>assistant")
    assert "For the question why do cats purr, access whether the passage is relevant" in prompt
    assert "word199" not in prompt


def test_rerank_orders_by_p_true(reranker, toy_corpus, toy_queries):
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    out = reranker.rerank(toy_queries, run, toy_corpus, k=3)
    values = list(out["q1"].values())
    assert values == sorted(values, reverse=True) and set(out["q1"]) == {"d1", "d2", "d3"}


def test_plain_prompt_without_chat_template(tokenizer):
    model = _tiny("gpt2", len(tokenizer))
    reranker = LLMReranker(model, tokenizer, use_chat_template=False, show_progress=False)
    assert reranker.prompt("Q?", "P.") == format_prompt(DEFAULT_TEMPLATE, "Q?", "P.")
    assert reranker.prompt("Q?", "P.").startswith("Passage: P.")
    assert len(reranker.score(PAIRS[:2])) == 2


def test_bad_settings_are_errors(tokenizer):
    model = _tiny("gpt2", len(tokenizer))
    with pytest.raises(RankwiseError, match=r"\{passage\}"):
        LLMReranker(model, tokenizer, template="Is {question} relevant?")
    with pytest.raises(RankwiseError, match="1-token word"):
        LLMReranker(model, tokenizer, true_token="Absolutely definitely")
    with pytest.raises(RankwiseError, match="tokenizer"):
        LLMReranker(model)


@pytest.mark.slow
def test_bundled_smollm2_prefers_the_relevant_passage():
    reranker = LLMReranker("smollm2", show_progress=False)
    relevant, unrelated = reranker.score(
        [
            ("What is the capital of France?", "Paris is the capital and largest city of France."),
            ("What is the capital of France?", "The mitochondrion is the powerhouse of the cell."),
        ]
    )
    assert relevant > unrelated


def test_a_reranker_sharing_the_generators_model_keeps_its_own_prompt_settings(tokenizer):
    """Regression: sharing the generator's weights used to drop the section's template, batch size and cuts."""
    from rankwise.build import build_reranker
    from rankwise.config.sections import LLMRerankConfig
    from rankwise.generate.local import LocalGenerator

    model = _tiny("llama", len(tokenizer))
    generator = LocalGenerator.from_pretrained_objects(model, tokenizer, show_progress=False)
    template = "Q: {question}\nP: {passage}\nRelevant? Answer True or False."
    section = LLMRerankConfig(
        model=generator.model_name, template=template, system_prompt="Judge.", max_passage_tokens=16, batch_size=3
    )
    reranker = build_reranker(section, show_progress=False, share_with=generator)
    assert reranker.model is model  # one copy of the weights
    assert (reranker.template, reranker.system_prompt) == (template, "Judge.")
    assert (reranker.max_passage_tokens, reranker.batch_size, reranker.max_tokens) == (16, 3, section.max_tokens)
