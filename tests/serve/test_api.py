"""The HTTP contract of ``rankwise serve``: every endpoint, the stream, auth and every bad-input answer.

The pipeline is BM25 over six toy documents, a tiny random cross-encoder and a scripted OpenAI-compatible model
(``conftest.ScriptedLLM``), all built through ``rankwise.build`` exactly as the command builds them.
"""

from __future__ import annotations

import json

import httpx2
import pytest
from fastapi.testclient import TestClient
from serve_helpers import DOCS, build, live

from rankwise.types import Query

QUESTION = "why do cats purr"


@pytest.fixture()
def client(toy, tiny_cross_encoder_dir, scripted_llm):
    with TestClient(build(toy, tiny_cross_encoder_dir, scripted_llm)) as test_client:
        yield test_client


def direct_ranking(toy, reranker_dir, query: str) -> tuple[dict[str, float], dict[str, float]]:
    """What ``rankwise search --k 6`` then ``rankwise rerank --top-n 6`` give for ``query``."""
    from rankwise.build import load_index
    from rankwise.data import load_corpus
    from rankwise.rerank.cross_encoder import CrossEncoderReranker
    from rankwise.types import sort_run

    corpus, _ = load_corpus(toy["corpus"])
    queries = {"q": Query("q", query)}
    first = sort_run(load_index(toy["index"], show_progress=False).search(queries, k=6))
    reranked = CrossEncoderReranker(str(reranker_dir), show_progress=False).rerank(queries, first, corpus, k=6)
    return first["q"], sort_run(reranked)["q"]


def test_healthz_names_stages_models_and_the_config_hash(client, tiny_cross_encoder_dir, scripted_llm):
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["stages"] == ["retrieve", "rerank", "generate"]
    assert health["models"]["rerank"] == str(tiny_cross_encoder_dir)
    assert health["models"]["generate"] == f"scripted @ {scripted_llm.url}"
    assert len(health["config_hash"]) == 16 and health["documents"] == 6
    assert health["max_k"] == 6 and health["k"] == 3 and health["auth"] is False


def test_search_gives_the_order_of_rankwise_search_then_rerank(client, toy, tiny_cross_encoder_dir):
    first, reranked = direct_ranking(toy, tiny_cross_encoder_dir, QUESTION)
    reply = client.post("/v1/search", json={"query": QUESTION, "k": 4})
    assert reply.status_code == 200
    body = reply.json()
    assert [r["id"] for r in body["results"]] == list(reranked)[:4]
    for position, result in enumerate(body["results"], start=1):
        assert result["score"] == pytest.approx(reranked[result["id"]], abs=1e-6)
        assert result["rank"] == position
        assert result["first_stage_rank"] == list(first).index(result["id"]) + 1
        assert result["text"] and "title" in result
    assert set(body["latency_ms"]) == {"retrieve", "rerank", "total"}


def test_search_without_a_reranker_is_the_first_stage(toy):
    from rankwise.build import load_index

    expected = load_index(toy["index"], show_progress=False).search({"q": Query("q", "cats")}, k=6)["q"]
    with TestClient(build(toy)) as test_client:
        body = test_client.post("/v1/search", json={"query": "cats"}).json()  # k defaults to 10, capped at 6 docs
    assert [(r["id"], r["score"]) for r in body["results"]] == list(expected.items())
    assert set(body["latency_ms"]) == {"retrieve", "total"}


def test_rerank_is_cohere_compatible(client, toy, tiny_cross_encoder_dir):
    documents = ["Cats purr when content.", {"text": "Dogs bark."}, "Fish swim.", "Cats purr when content."]
    reply = client.post(
        "/v1/rerank",
        json={"query": QUESTION, "documents": documents, "top_n": 3, "model": "tiny", "return_documents": True},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "tiny" and len(body["results"]) == 3
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    texts = [d if isinstance(d, str) else d["text"] for d in documents]
    assert all(r["document"]["text"] == texts[r["index"]] for r in body["results"])
    # documents 0 and 3 are identical: equal scores, the earlier one first
    indexes = [r["index"] for r in body["results"]]
    if 0 in indexes and 3 in indexes:
        assert indexes.index(0) < indexes.index(3)


def test_rankwise_http_reranker_gets_the_served_cross_encoders_scores(toy, tiny_cross_encoder_dir):
    from rankwise.build import build_reranker
    from rankwise.config.sections import HTTPRerankConfig
    from rankwise.data import load_corpus
    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    corpus, _ = load_corpus(toy["corpus"])
    queries = {"a": Query("a", QUESTION), "b": Query("b", "which animals sing")}
    run = {qid: {doc_id: 0.0 for doc_id in corpus} for qid in queries}
    local = CrossEncoderReranker(str(tiny_cross_encoder_dir), show_progress=False).rerank(queries, run, corpus, k=6)
    with live(build(toy, tiny_cross_encoder_dir)) as url:
        client = build_reranker(HTTPRerankConfig(url=f"{url}/v1/rerank"), show_progress=False)
        remote = client.rerank(queries, run, corpus, k=6)
    for qid in queries:
        assert list(remote[qid]) == list(local[qid])
        assert remote[qid] == pytest.approx(local[qid], abs=1e-6)


def test_ask_answers_with_citations_passages_and_latency(client, toy, tiny_cross_encoder_dir, scripted_llm):
    _, reranked = direct_ranking(toy, tiny_cross_encoder_dir, QUESTION)
    body = client.post("/v1/ask", json={"question": QUESTION}).json()
    top = next(iter(reranked))
    first_words = " ".join(next(d for d in DOCS if d.id == top).text.split()[:4])
    assert body["answer"] == f"{first_words} [1]."
    assert body["citations"] == [{"n": 1, "id": top}]
    assert body["abstained"] is False
    assert [p["id"] for p in body["passages"]] == list(reranked)[:3]  # the server's k = 3
    assert [p["n"] for p in body["passages"]] == [1, 2, 3]
    assert set(body["latency_ms"]) == {"retrieve", "rerank", "generate", "total"}
    assert all(value >= 0 for value in body["latency_ms"].values())
    assert len(client.post("/v1/ask", json={"question": QUESTION, "k": 5}).json()["passages"]) == 5


def test_ask_says_when_the_passages_do_not_suffice(client):
    body = client.post("/v1/ask", json={"question": "how far away is the moon"}).json()
    assert body["abstained"] is True and body["citations"] == []


def test_ask_passes_the_conversation_to_the_model(client, scripted_llm):
    history = [{"role": "user", "content": "tell me about cats"}, {"role": "assistant", "content": "They purr."}]
    reply = client.post("/v1/ask", json={"question": "why?", "history": history})
    assert reply.status_code == 200
    prompt = scripted_llm.requests[-1]["messages"][-1]["content"]
    assert "user: tell me about cats\nagent: They purr." in prompt


def test_ask_streams_passages_then_tokens_then_citations(toy, tiny_cross_encoder_dir, scripted_llm):
    with live(build(toy, tiny_cross_encoder_dir, scripted_llm)) as url, httpx2.Client(timeout=30) as http:
        plain = http.post(f"{url}/v1/ask", json={"question": QUESTION}).json()
        with http.sse(f"{url}/v1/ask", method="POST", json={"question": QUESTION, "stream": True}) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            events = [(event.event, event.json()) for event in source]
    names = [name for name, _ in events]
    assert names[0] == "passages" and names[-1] == "citations"
    assert set(names[1:-1]) == {"token"} and len(names) > 3
    assert events[0][1]["passages"] == plain["passages"]
    assert "".join(data["text"] for name, data in events if name == "token") == plain["answer"]
    final = events[-1][1]
    assert final["answer"] == plain["answer"] and final["citations"] == plain["citations"]
    assert final["streamed"] is False  # an HTTP model's answer arrives whole, then goes out word by word


def test_bearer_token_guards_the_api_but_not_health_or_page(toy, monkeypatch):
    with TestClient(build(toy, api_key="s3cret")) as test_client:
        refused = test_client.post("/v1/search", json={"query": "cats"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"].startswith("authorization:")
        wrong = test_client.post("/v1/search", json={"query": "cats"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert test_client.get("/metrics").status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert test_client.post("/v1/search", json={"query": "cats"}, headers=good).status_code == 200
        assert test_client.get("/metrics", headers=good).status_code == 200
        assert test_client.get("/healthz").json()["auth"] is True
        assert test_client.get("/").status_code == 200


BAD = [
    ("/v1/search", b"{", 422, "body: malformed JSON"),
    ("/v1/search", b"[1, 2]", 422, "body: must be a JSON object"),
    ("/v1/search", b"{}", 422, "query: required field is missing"),
    ("/v1/search", b'{"query": "cats", "top": 3}', 422, "top: unknown field"),
    ("/v1/search", b'{"query": "   "}', 422, "query: must not be empty"),
    ("/v1/search", b'{"query": ""}', 422, "query: must not be empty"),
    ("/v1/search", b'{"query": 7}', 422, "query: "),
    ("/v1/search", b'{"query": "' + b"x" * 30000 + b'"}', 422, "query: string should have at most 20000"),
    ("/v1/search", b'{"query": "cats", "k": 0}', 422, "k: "),
    ("/v1/search", b'{"query": "cats", "k": -3}', 422, "k: "),
    ("/v1/search", b'{"query": "cats", "k": 7}', 422, "k: must be at most 6"),
    ("/v1/search", b'{"query": "cats", "k": 100000}', 422, "k: "),
    ("/v1/search", b'{"query": "cats", "k": "many"}', 422, "k: "),
    ("/v1/rerank", b'{"query": "cats", "documents": []}', 422, "documents: "),
    ("/v1/rerank", b'{"query": "cats"}', 422, "documents: required field is missing"),
    ("/v1/rerank", b'{"query": "cats", "documents": [3]}', 422, "documents.0"),
    ("/v1/rerank", b'{"query": "cats", "documents": [{"body": "x"}]}', 422, "documents.0"),
    ("/v1/rerank", b'{"query": "cats", "documents": ["x"], "top_n": 0}', 422, "top_n: "),
    ("/v1/ask", b'{"question": ""}', 422, "question: must not be empty"),
    ("/v1/ask", b'{"query": "cats"}', 422, "question: required field is missing"),
    ("/v1/ask", b'{"question": "cats", "k": 0}', 422, "k: "),
    ("/v1/ask", b'{"question": "cats", "k": 9}', 422, "k: must be at most 6"),
    ("/v1/ask", b'{"question": "cats", "history": [{"role": "robot", "content": "x"}]}', 422, "history.0.role"),
    ("/v1/ask", b'{"question": "cats", "history": "user: hi"}', 422, "history: "),
    ("/v1/ask", b'{"question": "cats", "stream": "yes please"}', 422, "stream: "),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), BAD, ids=[f"{p}:{b[:40].decode()}" for p, b, _, _ in BAD]
)
def test_bad_input_is_a_4xx_naming_the_field(client, path, body, status, message):
    reply = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error.startswith(message), error
    assert "Traceback" not in reply.text and len(error) < 200


def test_wrong_content_type_and_oversized_bodies_are_refused(toy):
    with TestClient(build(toy, max_body_bytes=1000)) as test_client:
        form = test_client.post("/v1/search", content=b"query=cats")
        assert form.status_code == 415 and form.json()["error"].startswith("content-type:")
        big = json.dumps({"query": "cats " * 500}).encode()
        declared = test_client.post("/v1/search", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"].startswith("body:")
        chunked = test_client.post(  # no Content-Length: counted while it is read
            "/v1/search", content=iter([big[:600], big[600:]]), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413 and chunked.json()["error"].startswith("body:")
        assert test_client.post("/v1/search", json={"query": "cats"}).status_code == 200


def test_missing_stages_and_unknown_paths_answer_in_json(toy):
    with TestClient(build(toy)) as test_client:
        assert test_client.post("/v1/rerank", json={"query": "a", "documents": ["b"]}).status_code == 501
        no_generator = test_client.post("/v1/ask", json={"question": "a"})
        assert no_generator.status_code == 501 and "no generator" in no_generator.json()["error"]
        missing = test_client.get("/v2/nothing")
        assert missing.status_code == 404 and missing.json()["error"].startswith("/v2/nothing:")
        wrong_method = test_client.get("/v1/search")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_a_failing_model_is_a_502_with_the_reason(toy, scripted_llm):
    scripted_llm.status = 400  # not retried by the HTTP generator
    with TestClient(build(toy, llm=scripted_llm)) as test_client:
        reply = test_client.post("/v1/ask", json={"question": QUESTION})
    assert reply.status_code == 502
    assert reply.json()["error"].startswith("the pipeline failed:") and "400" in reply.json()["error"]
    assert "Traceback" not in reply.text


def test_metrics_count_requests_stages_and_batches(client):
    for _ in range(2):
        client.post("/v1/search", json={"query": QUESTION})
    client.post("/v1/search", json={"query": ""})
    text = client.get("/metrics").text
    assert 'rankwise_requests_total{endpoint="/v1/search",status="200"} 2' in text
    assert 'rankwise_requests_total{endpoint="/v1/search",status="422"} 1' in text
    assert 'rankwise_stage_seconds_count{stage="retrieve"} 2' in text
    assert 'rankwise_stage_seconds_count{stage="rerank"} 2' in text
    assert 'rankwise_batch_items_count{batcher="rerank"} 2' in text
    assert 'rankwise_queue_depth{batcher="generate"} 0' in text
    assert "# TYPE rankwise_request_seconds histogram" in text


def test_a_slow_client_does_not_stall_others(toy, scripted_llm):
    import socket
    import time

    with live(build(toy, llm=scripted_llm)) as url:
        host, port = url.removeprefix("http://").split(":")
        # one client sends half a body and stalls; another asks for a stream and never reads it
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200\r\n\r\n{"query": "ca'
        )
        body = json.dumps({"question": "cats " * 2000, "stream": True}).encode()
        silent = socket.create_connection((host, int(port)))
        silent.sendall(
            b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            started = time.perf_counter()
            for _ in range(5):
                reply = httpx2.post(f"{url}/v1/ask", json={"question": "why do cats purr"}, timeout=10)
                assert reply.status_code == 200
            assert time.perf_counter() - started < 5
        finally:
            stalled.close()
            silent.close()
