"""MT-RAG tasks as cross-encoder training data (``rankwise train reranker`` with ``data: mtrag:...``).

``data: mtrag:all`` (or ``mtrag:clapnq,fiqa``) reads the judged MT-RAG-UN tasks of those domains from
``mtrag_dir`` (default ``$RANKWISE_DATA/mtrag``), each on its pooled corpus (:mod:`rankwise.data.mtrag`). The tasks
of each domain are split by conversation (:func:`rankwise.data.mtrag_split.split_by_conversation`,
``test_fraction``, ``seed``); only the train side is returned for training (the trainer draws its dev queries from
it), and the test side is recorded for ``heldout.json``. The query text is the last user turn (``query:
last_turn``) or every user turn joined (``full_history``), the strategies of ``rewrite: {strategy: ...}``; the
MT-RAG-UN tasks have no human rewrites (those exist for the original MT-RAG tasks only, none of which is judged
here). BM25 negatives are mined in each domain's own pool, so a negative always comes from the query's domain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankwise.data.mtrag import DOMAINS, canonical_domain, load_generation_tasks, load_pooled_retrieval
from rankwise.data.mtrag_split import split_by_conversation
from rankwise.errors import RankwiseError
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.retrieve.rewrite import STRATEGIES
from rankwise.types import Dataset, Document, Qrels, Query, Run

PREFIX = "mtrag:"


def mtrag_domains(data: str) -> list[str] | None:
    """The domains ``data`` names (``mtrag:all``, ``mtrag:clapnq,fiqa``), or None when it is not MT-RAG."""
    if not data.startswith(PREFIX):
        return None
    names = [n.strip() for n in data[len(PREFIX) :].split(",") if n.strip()]
    if names == ["all"]:
        return list(DOMAINS)
    if not names:
        raise RankwiseError(f"data: '{data}' names no MT-RAG domain (mtrag:all or mtrag:clapnq,fiqa,...)")
    domains = [canonical_domain(n, f"data: {data}") for n in names]
    return list(dict.fromkeys(domains))


def mtrag_root(mtrag_dir: str | None) -> Path:
    if mtrag_dir:
        return Path(mtrag_dir)
    env = os.environ.get("RANKWISE_DATA")
    if not env:
        raise RankwiseError("data: mtrag:... reads $RANKWISE_DATA/mtrag; set RANKWISE_DATA or mtrag_dir")
    return Path(env) / "mtrag"


@dataclass(frozen=True)
class MTRAGTraining:
    dataset: Dataset  # the train conversations' tasks; corpus = the pools of every domain
    run: Run  # BM25 in each task's own pool, top first_stage_depth
    heldout: dict[str, Any]  # what heldout.json records


def mtrag_training_data(
    data: str, mtrag_dir: str | None, test_fraction: float, seed: int, query: str, depth: int
) -> MTRAGTraining:
    """Train-side tasks of the domains of ``data`` with their BM25 run, and the held-out record."""
    domains = mtrag_domains(data) or []
    root = mtrag_root(mtrag_dir)
    tasks = load_generation_tasks(root, domains)
    rewrite = STRATEGIES[query]
    corpus: dict[str, Document] = {}
    queries: dict[str, Query] = {}
    qrels: Qrels = {}
    run: Run = {}
    heldout: dict[str, Any] = {"data": data, "query": query, "test_fraction": test_fraction, "seed": seed}
    heldout.update(tasks={}, conversations={}, train_tasks={})
    warnings: list[str] = []
    for domain in domains:
        pooled = load_pooled_retrieval(root, domain, tasks)
        clash = sorted(set(pooled.corpus) & set(corpus))
        if clash:
            raise RankwiseError(f"{root}: passage id {clash[0]} is in two domains' pools")
        conversation = {t.id: t.conversation_id for t in tasks if t.id in pooled.qrels}
        train_ids, test_ids = split_by_conversation(conversation, test_fraction, seed)
        heldout["tasks"][domain] = test_ids
        heldout["conversations"][domain] = sorted({conversation[t] for t in test_ids})
        heldout["train_tasks"][domain] = len(train_ids)
        wanted = {qid: rewrite(pooled.queries[qid]) for qid in train_ids}
        bm25 = BM25Retriever(show_progress=False)
        bm25.index(pooled.corpus)
        run.update(bm25.search(wanted, k=depth))
        corpus.update(pooled.corpus)
        queries.update(wanted)
        qrels.update({qid: pooled.qrels[qid] for qid in train_ids})
        warnings.extend(w for w in pooled.warnings if w not in warnings)
    dataset = Dataset(f"mtrag-{'+'.join(domains)}-train", corpus, queries, qrels, warnings)
    return MTRAGTraining(dataset, run, heldout)
