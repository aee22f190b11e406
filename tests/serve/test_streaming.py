"""Streaming a local model's answer: tokens arrive as they are decoded, and the streamed answer is the unstreamed one.

The model is a tiny random Llama (2 layers) with the bundled MiniLM tokenizer, saved to a directory and served with
``--generator DIR`` through ``rankwise.build``; greedy decoding makes its (meaningless) answer deterministic.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from serve_helpers import live

from rankwise.serve.app import create_app
from rankwise.serve.parts import from_flags
from rankwise.serve.service import Service
from rankwise.serve.streaming import StopGuard


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pieces(stop: tuple[str, ...], chunks: list[str]) -> tuple[list[str], str]:
    sent: list[str] = []
    guard = StopGuard(stop, sent.append)
    for chunk in chunks:
        guard.feed(chunk)
    guard.close()
    return sent, "".join(sent)


def test_stop_guard_holds_back_a_possible_stop_string_and_cuts_at_one():
    sent, text = pieces(("\n\nQuestion",), ["Paris [1].", "\n", "\nQues", "tion: next"])
    assert text == "Paris [1]." and sent == ["Paris [1]."]
    _, text = pieces(("\n\nQuestion",), ["Paris", "\n\n", "Quiet"])  # a false alarm is released
    assert text == "Paris\n\nQuiet"
    _, text = pieces(("END", "STOP"), ["abc ST", "OP def"])
    assert text == "abc "
    _, text = pieces((), ["a", "b"])
    assert text == "ab"


def test_a_local_model_streams_the_answer_it_gives_unstreamed(toy, tiny_llama_dir):
    served = from_flags(
        [toy["index"]], toy["corpus"], generator=str(tiny_llama_dir), max_new_tokens=12, k=2, log=lambda m: None
    )
    app = create_app(Service(served), mcp=False)
    with live(app) as url, httpx2.Client(timeout=60) as http:
        assert http.get(f"{url}/healthz").json()["streams_tokens"] is True
        plain = http.post(f"{url}/v1/ask", json={"question": "why do cats purr"}).json()
        with http.sse(f"{url}/v1/ask", method="POST", json={"question": "why do cats purr", "stream": True}) as source:
            events = [(event.event, event.json()) for event in source]
    assert plain["answer"]  # a random model still says something
    tokens = [data["text"] for name, data in events if name == "token"]
    assert events[0][0] == "passages" and events[-1][0] == "citations"
    assert len(tokens) >= 2  # pieces as decoded, not one block
    final = events[-1][1]
    assert final["streamed"] is True
    assert final["answer"] == plain["answer"] and final["citations"] == plain["citations"]
    assert "".join(tokens).strip() == plain["answer"]


def test_a_client_that_leaves_mid_stream_does_not_break_the_server(toy, tiny_llama_dir):
    served = from_flags(
        [toy["index"]], toy["corpus"], generator=str(tiny_llama_dir), max_new_tokens=8, k=2, log=lambda m: None
    )
    with TestClient(create_app(Service(served), mcp=False)) as client:
        with client.stream("POST", "/v1/ask", json={"question": "cats", "stream": True}) as reply:
            first = next(reply.iter_lines())
            assert first == "event: passages"
        assert client.post("/v1/ask", json={"question": "dogs"}).status_code == 200


def test_local_models_take_turns_on_one_thread_and_a_remote_one_does_not_wait(
    toy, tiny_llama_dir, tiny_cross_encoder_dir, scripted_llm
):
    import asyncio

    def threads(generator: str, model: str | None) -> tuple[object, object, object]:
        served = from_flags(
            [toy["index"]], toy["corpus"], reranker="cross-encoder", reranker_model=str(tiny_cross_encoder_dir),
            generator=generator, generator_model=model, log=lambda m: None,
        )  # fmt: skip
        service = Service(served)

        async def started() -> tuple[object, object, object]:
            await service.start()
            seen = tuple(service.batchers[name].executor for name in ("retrieve", "rerank", "generate"))
            await service.stop()
            return seen

        return asyncio.run(started())

    retrieve, rerank, generate = threads(str(tiny_llama_dir), None)
    assert rerank is generate and retrieve is not rerank
    retrieve, rerank, generate = threads(scripted_llm.url, "scripted")
    assert rerank is not generate
