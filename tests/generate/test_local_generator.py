"""The transformers generation path on a tiny random Llama (2 layers, hidden 64) with the bundled MiniLM tokenizer."""

from __future__ import annotations

import pytest

from rankwise.errors import RankwiseError
from rankwise.generate.base import GenerationRequest
from rankwise.generate.local import LocalGenerator
from rankwise.generate.prompts import TEMPLATES
from rankwise.types import Document

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
DOCS = (
    Document("d1", "Paris", "Paris is the capital of France."),
    Document("d2", "Madrid", "Madrid is the capital of Spain."),
    Document("d3", "Rome", "Rome is the capital of Italy."),
)


@pytest.fixture(scope="module")
def tiny(minilm_path: str):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return LlamaForCausalLM(config), tokenizer


def _generator(tiny, chat_template: str | None = CHAT_TEMPLATE, **kwargs) -> LocalGenerator:
    model, tokenizer = tiny
    tokenizer.chat_template = chat_template
    options = {"max_new_tokens": 8, "show_progress": False, **kwargs}
    return LocalGenerator.from_pretrained_objects(model, tokenizer, **options)


def test_generate_returns_a_parsed_answer(tiny) -> None:
    generator = _generator(tiny)
    answer = generator.generate("What is the capital of France?", DOCS)
    again = generator.generate("What is the capital of France?", DOCS)
    assert answer.raw and answer.raw == again.raw  # greedy: deterministic
    assert answer.meta["passages_shown"] == 3
    assert answer.text == answer.raw.strip()


def test_chat_template_is_used_when_present(tiny) -> None:
    messages = TEMPLATES["default"].messages("q", DOCS[:1])
    rendered = _generator(tiny).render(messages)
    assert rendered.startswith("<system> ") and rendered.endswith("<assistant>")
    plain = _generator(tiny, chat_template=None).render(messages)
    assert plain.startswith("System: ") and plain.endswith("Assistant:")


def test_batched_generation_matches_one_by_one(tiny) -> None:
    requests = [
        GenerationRequest("Capital of France?", DOCS),
        GenerationRequest("Which city is in Spain? Please answer briefly.", DOCS[1:]),
        GenerationRequest("Rome?", DOCS[2:], history=("user: hi", "agent: hello")),
    ]
    batched = [a.raw for a in _generator(tiny, batch_size=3).generate_batch(requests)]
    single = [a.raw for a in _generator(tiny, batch_size=1).generate_batch(requests)]
    assert batched == single


def test_stop_strings_cut_the_output(tiny) -> None:
    full = _generator(tiny, max_new_tokens=12).generate("Capital?", DOCS).raw
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = _generator(tiny, max_new_tokens=12, stop=[stop]).generate("Capital?", DOCS).raw
    assert cut == full[: full.find(stop)]


def test_passages_are_dropped_to_fit_the_context(tiny) -> None:
    generator = _generator(tiny)
    question = "Capital of France?"
    one = generator.prompt_tokens(generator.template.messages(question, DOCS[:1]))
    two = generator.prompt_tokens(generator.template.messages(question, DOCS[:2]))
    limited = _generator(tiny, max_input_tokens=(one + two) // 2)
    answer = limited.generate(question, DOCS)
    assert answer.meta["passages_shown"] == 1
    assert answer.meta["passages_dropped_to_fit"] == 2
    with pytest.raises(RankwiseError, match="does not fit"):
        _generator(tiny, max_input_tokens=5).generate(question, DOCS)


def test_invalid_batch_size() -> None:
    with pytest.raises(RankwiseError, match="batch_size"):
        LocalGenerator(batch_size=0)


@pytest.mark.slow
def test_bundled_smollm2_answers_with_the_default_template() -> None:
    generator = LocalGenerator("smollm2", max_new_tokens=24, show_progress=False)
    answer = generator.generate("What is the capital of France?", DOCS)
    assert answer.raw.strip()
