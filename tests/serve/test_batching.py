"""Micro-batching: concurrent items share a call, the budget splits batches, a full queue refuses at once, a
caller that left is skipped, stopping finishes the queue; and through the server: concurrent rerank requests are
scored together with the scores each gets alone, and a full queue answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2
import pytest
from serve_helpers import build, live

from rankwise.errors import RankwiseError
from rankwise.serve.batching import MicroBatcher, Overloaded
from rankwise.serve.service import ServeSettings


class Recorder:
    """``run_batch`` that doubles numbers and records each batch (optionally holding each call ``hold`` s)."""

    def __init__(self, hold: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.hold = hold
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.hold:
            self.release.wait(self.hold)
        return [2 * i for i in items]


def run(coroutine):
    return asyncio.run(coroutine)


def test_items_that_arrive_together_share_one_call():
    async def main():
        recorder = Recorder()
        batcher = MicroBatcher("t", recorder, max_wait_s=0.05)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return recorder, results

    recorder, results = run(main())
    assert results == [2 * i for i in range(10)]
    assert recorder.batches == [list(range(10))]


def test_the_token_budget_and_item_cap_split_batches_in_arrival_order():
    async def main():
        recorder = Recorder()
        batcher = MicroBatcher("t", recorder, max_wait_s=0.05, budget=10, max_items=3)
        batcher.start()
        costs = [4, 4, 4, 20, 1, 1, 1, 1]
        results = await asyncio.gather(*(batcher.submit(i, cost) for i, cost in enumerate(costs)))
        await batcher.stop()
        return recorder, results

    recorder, results = run(main())
    assert results == [2 * i for i in range(8)]
    # 4+4 fits 10, the third 4 does not; 20 runs alone (the first item always runs); then 3 items at most
    assert recorder.batches == [[0, 1], [2], [3], [4, 5, 6], [7]]


def test_a_full_queue_refuses_at_once_with_a_retry_hint():
    async def main():
        recorder = Recorder(hold=5.0)
        batcher = MicroBatcher("t", recorder, max_wait_s=0.0, max_items=1, max_queue=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # item 0 is now being computed, the queue is empty
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(3)
        waited = time.perf_counter() - started
        recorder.release.set()
        done = await asyncio.gather(running, *queued)
        await batcher.stop()
        return refused.value, waited, done, batcher.stats.rejected

    refused, waited, done, rejected = run(main())
    assert waited < 1.0 and refused.retry_after >= 1 and "queue is full" in str(refused)
    assert done == [0, 2, 4] and rejected == 1


def test_a_caller_that_went_away_is_not_computed():
    async def main():
        recorder = Recorder(hold=5.0)
        batcher = MicroBatcher("t", recorder, max_wait_s=0.0, max_items=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        gone.cancel()
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        recorder.release.set()
        results = await asyncio.gather(first, kept)
        await batcher.stop()
        return recorder.batches, results

    batches, results = run(main())
    assert results == [0, 4] and batches == [[0], [2]]


def test_stop_finishes_what_is_queued_and_errors_reach_every_caller():
    def explode(items: list[int]) -> list[int]:
        if 13 in items:
            raise RankwiseError("unlucky batch")
        return items

    async def main():
        batcher = MicroBatcher("t", explode, max_wait_s=0.2)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 13)]
        await asyncio.sleep(0)
        await batcher.stop()  # does not wait out the 0.2 s: stopping runs the queue at once
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        with pytest.raises(RankwiseError, match="not running"):
            await batcher.submit(5)
        return outcomes

    outcomes = run(main())
    assert all(isinstance(o, RankwiseError) and "unlucky" in str(o) for o in outcomes)


def test_concurrent_rerank_requests_are_batched_with_unchanged_scores(toy, tiny_cross_encoder_dir):
    queries = [f"cats purr {i}" for i in range(12)]
    documents = ["Cats purr when content.", "Dogs bark.", "Fish swim in water.", "Birds sing."]
    settings = ServeSettings(batch_wait_ms=50)
    with live(build(toy, tiny_cross_encoder_dir, settings=settings)) as url:
        with httpx2.Client(timeout=30) as http:
            alone = [
                http.post(f"{url}/v1/rerank", json={"query": q, "documents": documents}).json()["results"]
                for q in queries
            ]

        async def together():
            async with httpx2.AsyncClient(timeout=30) as client:
                replies = await asyncio.gather(
                    *(client.post(f"{url}/v1/rerank", json={"query": q, "documents": documents}) for q in queries)
                )
                metrics = (await client.get(f"{url}/metrics")).text
            return [r.json()["results"] for r in replies], metrics

        batched, metrics = asyncio.run(together())
    for one, many in zip(alone, batched, strict=True):
        assert [r["index"] for r in one] == [r["index"] for r in many]
        assert [r["relevance_score"] for r in many] == pytest.approx([r["relevance_score"] for r in one], abs=1e-5)
    count = next(
        line for line in metrics.splitlines() if line.startswith('rankwise_batch_items_count{batcher="rerank"}')
    )
    assert int(count.split()[-1]) < 2 * len(queries)  # 12 alone + fewer than 12 calls for the 12 together


def test_a_full_queue_answers_503_with_retry_after(toy, scripted_llm):
    scripted_llm.delay = 1.0  # long enough that a loaded CI machine still sends the burst inside it
    settings = ServeSettings(batch_wait_ms=0, max_batch=1, max_queue=1)
    with live(build(toy, llm=scripted_llm, settings=settings)) as url:

        async def burst():
            async with httpx2.AsyncClient(timeout=30) as client:
                return await asyncio.gather(
                    *(client.post(f"{url}/v1/ask", json={"question": f"cats {i}"}) for i in range(12))
                )

        replies = asyncio.run(burst())
        statuses = sorted(r.status_code for r in replies)
        refused = [r for r in replies if r.status_code == 503]
        assert statuses.count(200) >= 1 and refused, statuses  # the first is answered; a full queue refuses
        assert set(statuses) == {200, 503}
        for reply in refused:
            assert int(reply.headers["retry-after"]) >= 1
            assert "queue is full" in reply.json()["error"]
        scripted_llm.delay = 0.0
        assert httpx2.get(f"{url}/v1/ask", timeout=30).status_code == 405  # still answering
        assert httpx2.post(f"{url}/v1/ask", json={"question": "cats"}, timeout=30).status_code == 200


def test_a_question_whose_client_left_is_not_answered(toy, scripted_llm):
    import json
    import socket

    scripted_llm.delay = 0.6
    settings = ServeSettings(batch_wait_ms=0, max_batch=1)
    with live(build(toy, llm=scripted_llm, settings=settings)) as url:
        host, port = url.removeprefix("http://").split(":")

        def ask_raw(question: str) -> socket.socket:
            body = json.dumps({"question": question}).encode()
            connection = socket.create_connection((host, int(port)))
            head = f"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            connection.sendall(head.encode() + b"\r\n\r\n" + body)
            return connection

        first = ask_raw("why do cats purr")
        while not scripted_llm.requests:  # the first question is with the model
            time.sleep(0.01)
        leaving = ask_raw("which animals sing")  # queued behind it ...
        time.sleep(0.1)
        leaving.close()  # ... and its asker gives up
        assert b"200 OK" in first.recv(65536)
        first.close()
        after = httpx2.post(f"{url}/v1/ask", json={"question": "where do fish live"}, timeout=30)
        assert after.status_code == 200
        asked = [r["messages"][-1]["content"] for r in scripted_llm.requests]
        assert len(asked) == 2 and not any("which animals sing" in prompt for prompt in asked)
        metrics = httpx2.get(f"{url}/metrics", timeout=10).text
        assert 'rankwise_requests_total{endpoint="/v1/ask",status="499"} 1' in metrics


def test_batches_are_no_wider_than_the_models_own(toy, tiny_cross_encoder_dir, scripted_llm):
    from rankwise.serve.parts import from_flags
    from rankwise.serve.service import Service

    served = from_flags(
        [toy["index"]], toy["corpus"], reranker="cross-encoder", reranker_model=str(tiny_cross_encoder_dir),
        generator=scripted_llm.url, generator_model="scripted", log=lambda m: None,
    )  # fmt: skip
    service = Service(served, ServeSettings(batch_tokens=100_000, max_batch=64))
    # a batch answers all its requests at its end: wider than what the model computes at once only adds waiting
    assert service.batchers["rerank"].budget == 4 * served.pipeline.reranker.max_tokens
    assert service.batchers["generate"].max_items == served.pipeline.generator.concurrency
    assert service.batchers["retrieve"].max_items == 64
