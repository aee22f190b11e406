from __future__ import annotations

import pytest

from rankwise.generate.http import HTTPGenerationError, HTTPGenerator, chat_completions_url
from rankwise.types import Document

PASSAGES = [Document("d1", "France", "Paris is the capital of France."), Document("d2", "Spain", "Madrid.")]


def _generator(server, **kwargs) -> HTTPGenerator:
    sleeps: list[float] = []
    options = {"max_retries": 2, "backoff": 0.01, "timeout": 5.0, "sleep": sleeps.append, **kwargs}
    generator = HTTPGenerator(server.url, "test-model", **options)
    generator.sleeps = sleeps  # type: ignore[attr-defined]
    return generator


def test_url_normalisation() -> None:
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions") == "https://h/v1/chat/completions"
    with pytest.raises(HTTPGenerationError, match="http"):
        chat_completions_url("h:8000/v1")


def test_answer_with_citations_and_request_shape(fake_openai) -> None:
    generator = _generator(fake_openai, api_key="secret", stop=["\n\n"], max_new_tokens=20)
    answer = generator.generate("What is the capital of France?", PASSAGES)
    assert answer.text == "Paris [1]"
    assert answer.plain_text == "Paris"
    assert [c.doc_id for c in answer.citations] == ["d1"]
    assert not answer.abstained
    request = fake_openai.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret"
    body = request["body"]
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 20
    assert body["temperature"] == 0.0
    assert body["stop"] == ["\n\n"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "[1] France: Paris is the capital of France." in body["messages"][1]["content"]


def test_abstention_and_out_of_range_citation(fake_openai) -> None:
    fake_openai.reply(body=fake_openai.completion("Insufficient context."))
    fake_openai.reply(body=fake_openai.completion("Madrid [2] [7]"))
    generator = _generator(fake_openai, concurrency=1)
    answers = generator.chat([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]])
    assert answers == ["Insufficient context.", "Madrid [2] [7]"]
    fake_openai.reply(body=fake_openai.completion("insufficient context"))
    abstained = generator.generate("Who?", PASSAGES)
    assert abstained.abstained and abstained.citations == ()
    fake_openai.reply(body=fake_openai.completion("Madrid [2] [7]"))
    answer = generator.generate("Capital of Spain?", PASSAGES)
    assert [c.number for c in answer.citations] == [2]
    assert answer.dropped_citations == 1


def test_retries_on_503_then_succeeds(fake_openai) -> None:
    fake_openai.reply(503, {"error": "busy"})
    fake_openai.reply(502, {"error": "bad gateway"})
    generator = _generator(fake_openai)
    assert generator.generate("q", PASSAGES).text == "Paris [1]"
    assert len(fake_openai.requests) == 3
    assert generator.sleeps == [0.01, 0.02]  # exponential backoff


def test_retry_after_header_is_honoured(fake_openai) -> None:
    fake_openai.reply(429, {"error": "slow down"}, headers={"Retry-After": "3"})
    generator = _generator(fake_openai)
    generator.generate("q", PASSAGES)
    assert generator.sleeps == [3.0]


def test_gives_up_after_max_retries_with_clear_error(fake_openai) -> None:
    for _ in range(3):
        fake_openai.reply(500, {"error": "boom"})
    generator = _generator(fake_openai)
    with pytest.raises(HTTPGenerationError, match=r"gave up after 3 attempt\(s\): HTTP 500.*boom"):
        generator.generate("q", PASSAGES)


def test_client_error_is_not_retried(fake_openai) -> None:
    fake_openai.reply(401, {"error": "bad key"})
    generator = _generator(fake_openai)
    with pytest.raises(HTTPGenerationError, match=r"HTTP 401 \(check the API key\).*bad key"):
        generator.generate("q", PASSAGES)
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"message": {"content": 3}}]}, "not a string"),
    ],
)
def test_malformed_replies(fake_openai, payload, message) -> None:
    fake_openai.reply(200, payload)
    with pytest.raises(HTTPGenerationError, match=message):
        _generator(fake_openai).generate("q", PASSAGES)


def test_timeout_is_retried_then_reported(fake_openai) -> None:
    fake_openai.reply(200, fake_openai.completion("late"), delay=1.0)
    fake_openai.reply(200, fake_openai.completion("late"), delay=1.0)
    generator = _generator(fake_openai, timeout=0.2, max_retries=1)
    with pytest.raises(HTTPGenerationError, match=r"no reply within 0\.2 s"):
        generator.generate("q", PASSAGES)


def test_connection_refused_is_reported() -> None:
    generator = HTTPGenerator("http://127.0.0.1:9/v1", "m", max_retries=1, sleep=lambda s: None, timeout=1)
    with pytest.raises(HTTPGenerationError, match="cannot connect"):
        generator.generate("q", PASSAGES)


def test_concurrent_batch_keeps_order(fake_openai) -> None:
    fake_openai.default_content = "{last}"
    generator = _generator(fake_openai, concurrency=4)
    conversations = [[{"role": "user", "content": f"question number {i}"}] for i in range(12)]
    assert generator.chat(conversations) == [f"question number {i}" for i in range(12)]
