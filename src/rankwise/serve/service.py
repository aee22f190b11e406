"""The served operations, shared by the HTTP API and the MCP tools: search, rerank, ask (and ask as a stream).

Each model stage has its own :class:`~rankwise.serve.batching.MicroBatcher`: ``retrieve`` (queries searched
together), ``rerank`` (the candidate lists of several requests scored in one ``rerank`` call) and ``generate``
(questions answered in one ``generate_batch`` call). The reranker and the generator take turns on one thread when
both run on this machine: two torch stages computing at once oversubscribe the cores (each brings its own pool of
intra-op threads), which on a 2-core CPU made eight concurrent questions take twice as long as eight in a row. A
model behind a URL keeps a thread of its own, so waiting for it never holds up local work. The stages run in the order
:class:`~rankwise.experiment.pipeline.Pipeline` runs them, with the same cuts as ``rankwise search``/``rerank``
and experiments: the first stage ranks ``candidates`` documents, the reranker rescores the best
``rerank_depth`` of them (optionally interpolated with the first-stage scores), the generator sees the best
``k``.

Bad requests raise :class:`BadRequest` (a message naming the field), a stage this server lacks raises
:class:`NotServed`, and a full queue raises :class:`~rankwise.serve.batching.Overloaded`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.generate.answer import Answer
from rankwise.generate.base import GenerationRequest
from rankwise.generate.http import HTTPGenerator
from rankwise.rerank.base import interpolate
from rankwise.rerank.http import HTTPReranker
from rankwise.serve.batching import MicroBatcher, approx_tokens
from rankwise.serve.metrics import Metrics
from rankwise.serve.parts import Served
from rankwise.serve.streaming import can_stream, stream_local
from rankwise.types import Document, Query, Run, sort_run

MAX_PAIR_TOKENS = 512  # a pair's cost in a batch budget is capped here, or at the reranker's max_length
SEPARATOR = "\x1f"  # joins a request's number and a doc id inside a merged rerank batch


class BadRequest(RankwiseError):
    """A request the server cannot answer as asked; the message starts with the field at fault."""


class NotServed(RankwiseError):
    """The request needs a stage (reranker, generator) this server was not started with."""


@dataclass(frozen=True)
class ServeSettings:
    """Batching and queue limits (``rankwise serve --batch-wait-ms/--batch-tokens/--max-batch/--max-queue``)."""

    batch_wait_ms: float = 5.0
    batch_tokens: int = 32768
    max_batch: int = 64
    max_queue: int = 64


@dataclass(frozen=True)
class RerankJob:
    query: str
    run: dict[str, float]  # doc id -> first-stage score, in rank order
    docs: Mapping[str, Document]


@dataclass(frozen=True)
class GenerateJob:
    request: GenerationRequest
    emit: Callable[[str], None] | None = None  # set: stream the answer's text through it


class Service:
    """Async front of a :class:`Served` pipeline; :meth:`start` and :meth:`stop` run on the serving loop."""

    def __init__(self, served: Served, settings: ServeSettings = ServeSettings(), metrics: Metrics | None = None):
        self.served, self.settings = served, settings
        self.pipeline = served.pipeline
        self.metrics = metrics or Metrics()
        common = {
            "max_wait_s": settings.batch_wait_ms / 1000,
            "budget": settings.batch_tokens,
            "max_items": settings.max_batch,
            "max_queue": settings.max_queue,
            "on_batch": self.metrics.batch,
        }
        self.batchers: dict[str, MicroBatcher[Any, Any]] = {
            "retrieve": MicroBatcher("retrieve", self._retrieve, **common)
        }
        reranker, generator = self.pipeline.reranker, self.pipeline.generator
        self._pair_cap = MAX_PAIR_TOKENS  # most tokens a pair costs: the reranker truncates longer ones
        if reranker is not None:
            # A batch answers all its requests when its last pair is scored: past a few of the model's own forward
            # passes it only adds waiting (on a CPU, compute-bound, batching gains little beyond that).
            if isinstance(getattr(reranker, "max_length", None), int):
                self._pair_cap = min(reranker.max_length, MAX_PAIR_TOKENS)
            passes = getattr(reranker, "max_tokens", None)
            budget = min(settings.batch_tokens, 4 * passes) if isinstance(passes, int) else settings.batch_tokens
            self.batchers["rerank"] = MicroBatcher("rerank", self._rerank, **{**common, "budget": budget})
        if generator is not None:
            # Likewise a generator's own batch (local) or parallel requests (HTTP) bound what one call gains.
            width = getattr(generator, "batch_size", None) or getattr(generator, "concurrency", None)
            items = min(settings.max_batch, width) if isinstance(width, int) else settings.max_batch
            self.batchers["generate"] = MicroBatcher("generate", self._generate, **{**common, "max_items": items})
        self._model_thread: Any = None

    async def start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rankwise-model")
        local = {
            "rerank": self.pipeline.reranker is not None and not _remote(self.pipeline.reranker),
            "generate": self.pipeline.generator is not None and not _remote(self.pipeline.generator),
        }
        for name, batcher in self.batchers.items():
            batcher.start(self._model_thread if local.get(name) else None)

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=True)
            self._model_thread = None

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            **self.served.info,
            "documents": len(self.pipeline.corpus),
            "k": self.pipeline.k,
            "max_k": self.served.max_k,
            "reranker": self.pipeline.reranker is not None,
            "generator": self.pipeline.generator is not None,
            "streams_tokens": self.pipeline.generator is not None and can_stream(self.pipeline.generator),
            "queues": {name: b.queued for name, b in self.batchers.items()},
            "computing": [name for name, b in self.batchers.items() if b.running],
        }

    # ------------------------------------------------------------------------------------------ batch work

    def _retrieve(self, queries: list[Query]) -> list[dict[str, float]]:
        keyed = {str(i): Query(str(i), q.text, q.history) for i, q in enumerate(queries)}
        run = sort_run(self.pipeline.retriever.search(keyed, k=self.pipeline.candidates))
        return [run.get(str(i), {}) for i in range(len(queries))]

    def _rerank(self, jobs: list[RerankJob]) -> list[dict[str, float]]:
        queries: dict[str, Query] = {}
        run: Run = {}
        corpus: dict[str, Document] = {}
        for number, job in enumerate(jobs):
            qid = str(number)
            queries[qid] = Query(qid, job.query)
            run[qid] = {}
            for doc_id, score in job.run.items():
                key = f"{number}{SEPARATOR}{doc_id}"  # same prefix within a job: ties still order by doc id
                run[qid][key] = score
                corpus[key] = job.docs[doc_id]
        assert self.pipeline.reranker is not None
        reranked = self.pipeline.reranker.rerank(queries, run, corpus, k=None)
        return [
            {key.split(SEPARATOR, 1)[1]: score for key, score in reranked.get(str(n), {}).items()}
            for n in range(len(jobs))
        ]

    def _generate(self, jobs: list[GenerateJob]) -> list[Answer]:
        generator = self.pipeline.generator
        assert generator is not None
        plain = [i for i, job in enumerate(jobs) if job.emit is None]
        answers: dict[int, Answer] = {}
        if plain:
            answers.update(zip(plain, generator.generate_batch([jobs[i].request for i in plain]), strict=True))
        for i, job in enumerate(jobs):
            if job.emit is not None:
                answers[i] = stream_local(generator, job.request, job.emit)
        return [answers[i] for i in range(len(jobs))]

    # ----------------------------------------------------------------------------------------- operations

    def check_k(self, k: int, field: str = "k") -> None:
        if k > self.served.max_k:
            raise BadRequest(f"{field}: must be at most {self.served.max_k} (the depth this pipeline ranks), not {k}")

    async def _timed(self, stage: str, latency: dict[str, float], work: Any) -> Any:
        started = time.perf_counter()
        try:
            return await work
        finally:
            seconds = time.perf_counter() - started
            latency[stage] = round(1000 * seconds, 3)
            self.metrics.stage(stage, seconds)

    async def rank(self, query: Query, latency: dict[str, float]) -> tuple[list[tuple[str, float]], dict[str, int]]:
        """The final ranking of ``query`` (doc id, score) and every document's 1-based first-stage rank."""
        searched = self.served.search_query(query)
        first = await self._timed("retrieve", latency, self.batchers["retrieve"].submit(searched))
        first_ranks = {doc_id: rank for rank, doc_id in enumerate(first, start=1)}
        final = first
        if self.pipeline.reranker is not None and first:
            depth = self.served.rerank_depth or len(first)
            top = dict(list(first.items())[:depth])
            docs = {doc_id: self.pipeline.corpus[doc_id] for doc_id in top}
            cost = sum(min(approx_tokens(searched.text, d.contents), self._pair_cap) for d in docs.values())
            job = RerankJob(searched.text, top, docs)
            final = await self._timed("rerank", latency, self.batchers["rerank"].submit(job, cost))
            if self.served.interpolate:
                final = interpolate({"q": top}, {"q": final}, self.served.interpolate).get("q", {})
            final = sort_run({"q": final})["q"]
        return list(final.items()), first_ranks

    def _passage(self, doc_id: str, score: float, rank: int, first_ranks: dict[str, int]) -> dict[str, Any]:
        doc = self.pipeline.corpus[doc_id]
        return {
            "id": doc_id,
            "score": score,
            "title": doc.title,
            "text": doc.text,
            "rank": rank,
            "first_stage_rank": first_ranks.get(doc_id),
        }

    async def search(self, text: str, k: int | None = None) -> dict[str, Any]:
        k = min(10, self.served.max_k) if k is None else k
        self.check_k(k)
        latency: dict[str, float] = {}
        started = time.perf_counter()
        ranking, first_ranks = await self.rank(Query("q", text), latency)
        results = [self._passage(d, s, i, first_ranks) for i, (d, s) in enumerate(ranking[:k], start=1)]
        latency["total"] = round(1000 * (time.perf_counter() - started), 3)
        return {"results": results, "latency_ms": latency}

    async def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> dict[str, Any]:
        """Cohere-style: score ``documents`` for ``query``; results best first (ties in input order)."""
        if self.pipeline.reranker is None:
            raise NotServed("this server has no reranker (start it with --reranker or a config with a rerank stage)")
        width = len(str(len(documents)))
        keys = [f"{i:0{width}d}" for i in range(len(documents))]  # zero-padded: ties keep the input order
        docs = {key: Document(key, "", text) for key, text in zip(keys, documents, strict=True)}
        cost = sum(min(approx_tokens(query, text), self._pair_cap) for text in documents)
        latency: dict[str, float] = {}
        started = time.perf_counter()
        job = RerankJob(query, dict.fromkeys(keys, 0.0), docs)
        scores = await self._timed("rerank", latency, self.batchers["rerank"].submit(job, cost))
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: top_n or len(documents)]
        latency["total"] = round(1000 * (time.perf_counter() - started), 3)
        return {
            "results": [{"index": int(key), "relevance_score": score} for key, score in ranked],
            "latency_ms": latency,
        }

    async def _prepare(
        self, question: str, k: int | None, history: Sequence[str], latency: dict[str, float]
    ) -> tuple[GenerationRequest, list[dict[str, Any]]]:
        if self.pipeline.generator is None:
            raise NotServed("this server has no generator (start it with --generator or a config with generate)")
        k = self.pipeline.k if k is None else k
        self.check_k(k)
        ranking, first_ranks = await self.rank(Query("q", question, tuple(history)), latency)
        shown = ranking[:k]
        passages = [self._passage(d, s, i, first_ranks) for i, (d, s) in enumerate(shown, start=1)]
        for number, passage in enumerate(passages, start=1):
            passage["n"] = number
        docs = tuple(self.pipeline.corpus[d] for d, _ in shown)
        return GenerationRequest(question, docs, tuple(history)), passages

    @staticmethod
    def _answer_fields(answer: Answer) -> dict[str, Any]:
        citations = []
        for citation in answer.citations:
            entry: dict[str, Any] = {"n": citation.number, "id": citation.doc_id}
            if citation.sentence is not None:
                entry["sentence"] = citation.sentence
            citations.append(entry)
        return {
            "answer": answer.text,
            "citations": citations,
            "abstained": answer.abstained,
            "dropped_citations": answer.dropped_citations,
        }

    @staticmethod
    def _cost(request: GenerationRequest) -> int:
        return approx_tokens(request.question, *request.history, *(d.contents for d in request.passages))

    async def ask(self, question: str, k: int | None = None, history: Sequence[str] = ()) -> dict[str, Any]:
        latency: dict[str, float] = {}
        started = time.perf_counter()
        request, passages = await self._prepare(question, k, history, latency)
        job = GenerateJob(request)
        answer = await self._timed("generate", latency, self.batchers["generate"].submit(job, self._cost(request)))
        latency["total"] = round(1000 * (time.perf_counter() - started), 3)
        return {**self._answer_fields(answer), "passages": passages, "latency_ms": latency}

    async def ask_events(
        self, question: str, k: int | None = None, history: Sequence[str] = ()
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``("passages", …)``, then ``("token", {"text"})`` pieces, then ``("citations", the full answer)``.

        A local transformers generator streams tokens as it decodes; any other generator's answer is sent as its
        words once it is complete (``"streamed": false`` in the last event says which happened)."""
        latency: dict[str, float] = {}
        started = time.perf_counter()
        request, passages = await self._prepare(question, k, history, latency)
        yield "passages", {"passages": passages, "latency_ms": dict(latency)}
        streamed = can_stream(self.pipeline.generator)
        pieces: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def emit(piece: str) -> None:  # called on the generate worker thread
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        job = GenerateJob(request, emit if streamed else None)
        work = asyncio.ensure_future(
            self._timed("generate", latency, self.batchers["generate"].submit(job, self._cost(request)))
        )
        try:
            while not work.done() or not pieces.empty():
                getter = asyncio.ensure_future(pieces.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield "token", {"text": getter.result()}
                else:
                    getter.cancel()
            answer = work.result()
        finally:
            if not work.done():
                work.cancel()  # the client went away: a queued job is skipped
        if not streamed:
            for word in _words(answer.text):
                yield "token", {"text": word}
        latency["total"] = round(1000 * (time.perf_counter() - started), 3)
        yield "citations", {**self._answer_fields(answer), "streamed": streamed, "latency_ms": latency}


def _remote(component: Any) -> bool:
    """A reranker or generator that only waits for another server (it computes nothing here)."""
    return isinstance(component, HTTPGenerator | HTTPReranker)


def _words(text: str) -> list[str]:
    """``text`` cut after each run of spaces, so the pieces join back to it exactly."""
    import re

    return re.findall(r"\S+\s*|\s+", text)
