"""The sources of the RankRAG blend: each turns a data set into candidate examples of the four tasks.

A :class:`Candidate` is cheap (the prompt is built only when it is picked, see :class:`Formatter`). Passages
look exactly as the consumers see them: ranking passages are ``Document.contents`` (what the reranker scores),
cut by :func:`rankwise.rerank.llm.truncate_passages`; QA passages go through the generator's prompt template.
HotpotQA paragraphs are built one sentence per line as :func:`rankwise.data.hotpotqa.hotpotqa_inputs` builds them.

BM25 hard negatives come from :class:`rankwise.retrieve.bm25.BM25Retriever` over each source's own corpus
(HotpotQA: the paragraphs of the *training* questions only, so held-out paragraphs never appear as text).
All sampling is seeded per (seed, source, query), so a source's examples do not change when others are added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rankwise.data._io import iter_jsonl, read_lines, require_str
from rankwise.data.beir import QUERIES_FILE, load_beir, read_queries
from rankwise.data.hotpotqa import hotpotqa_inputs, hotpotqa_split
from rankwise.data.mtrag import load_generation_tasks, pooled_corpus
from rankwise.data.trec import read_qrels
from rankwise.errors import DataError
from rankwise.rankrag.format import Formatter, Messages
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.train.dev import split_dev
from rankwise.train.negatives import mine_negatives
from rankwise.types import Document, Query


@dataclass(frozen=True)
class Candidate:
    """One possible example; ``make()`` builds ``(prompt, completion)`` when the example is picked."""

    task: str
    source: str
    query_id: str
    question: str
    key: str
    make: Callable[[], tuple[Messages, Messages]] = field(compare=False, repr=False)
    label: str | None = None  # "True"/"False" for ranking examples
    where: str = ""  # file and line, for errors about user data


def bm25_negatives(corpus: Mapping[str, Document], queries: Mapping[str, Query], depth: int) -> dict[str, list[str]]:
    """Each query's BM25 ranking (doc ids, best first) over ``corpus``, ``depth`` deep."""
    if not queries:
        return {}
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(corpus)
    return {qid: list(docs) for qid, docs in bm25.search(queries, k=depth).items()}


def hotpotqa(source: Any, fmt: Formatter, notes: list[str]) -> tuple[list[Candidate], dict[str, str]]:
    """Candidates from the training questions; returns them and the held-out questions (id -> text)."""
    examples, corpus, paragraphs = hotpotqa_inputs(source.path)
    train_ids, heldout_ids = hotpotqa_split(examples, source.heldout, source.split_seed)
    heldout = {e.id: e.question for e in examples if e.id in set(heldout_ids)}
    train = [e for e in examples if e.id in set(train_ids)]
    own = {d for e in train for d in paragraphs[e.id]}
    ranked = bm25_negatives({d: corpus[d] for d in own}, {e.id: Query(e.id, e.question) for e in train}, 30)
    out: list[Candidate] = []
    for e in train:
        by_title = dict(zip([t for t, _ in e.context], paragraphs[e.id], strict=True))
        gold_titles = list(dict.fromkeys(t for t, _ in e.supporting_facts if t in by_title))
        gold = [corpus[by_title[t]] for t in gold_titles]
        if not gold or e.answer is None:
            notes.append(f"hotpotqa: question {e.id} has no supporting paragraph or answer, skipped")
            continue
        gold_ids = {doc.id for doc in gold}
        negatives = [corpus[d] for d in ranked.get(e.id, []) if d not in gold_ids]
        facts = [(t, s) for t, s in e.supporting_facts if t in by_title]

        def sentences(shown: Sequence[Document], facts: list[tuple[str, int]] = facts) -> list[tuple[int, int]]:
            where = {doc.title: i for i, doc in enumerate(shown, start=1)}
            return [(where[t], s + 1) for t, s in facts if t in where]

        def context_qa(e: Any = e, gold: list[Document] = gold) -> tuple[Messages, Messages]:
            return fmt.qa(e.question, gold, e.answer, range(1, len(gold) + 1), sentences(gold))

        def rag_qa(variant: int, e: Any = e, gold: list[Document] = gold, negatives: list[Document] = negatives) -> Any:
            shown, cited = fmt.mix(gold, negatives, variant, "hotpotqa-rag", e.id)
            return fmt.qa(e.question, shown, e.answer, cited, sentences([shown[i - 1] for i in cited]))

        def rag_ranking(
            variant: int, e: Any = e, gold: list[Document] = gold, negatives: list[Document] = negatives
        ) -> Any:
            shown, relevant = fmt.mix(gold, negatives, variant, "hotpotqa-rank", e.id)
            return fmt.rag_ranking(e.question, shown, relevant)

        add = _adder(out, fmt, source.tasks, "hotpotqa", e.id, e.question)
        add("context_qa", e.id, context_qa)
        add("rag_qa", e.id, rag_qa)
        shown, cited = fmt.retrieved([corpus[d] for d in ranked.get(e.id, [])], gold_ids)
        if cited:  # retrieval found a gold paragraph: an answer can be grounded in what was retrieved
            marks = sentences([shown[i - 1] for i in cited])
            add("retrieved_qa", e.id, partial(_qa_maker, fmt, e.question, shown, e.answer, cited, marks, ()))
        add("rag_ranking", e.id, rag_ranking)
        distractors = [corpus[d] for d in paragraphs[e.id] if d not in gold_ids]
        picked = fmt.rng("hotpotqa-neg", e.id).sample(distractors, min(len(gold), len(distractors)))
        for doc, relevant in [(d, True) for d in gold] + [(d, False) for d in picked]:
            make = _ranking_maker(fmt, e.question, doc.contents, relevant)
            add("ranking", f"{e.id}-{doc.id}", make, "True" if relevant else "False")
    return out, heldout


def mtrag(source: Any, fmt: Formatter, notes: list[str]) -> list[Candidate]:
    """MT-RAG-UN generation tasks: answerable ones give QA and rag_ranking examples with their reference
    passages; UNANSWERABLE ones (when ``source.unanswerable``) give rag_qa examples over BM25 passages of the
    domain's pool whose target is the abstention string; UNDERSPECIFIED ones are skipped."""
    tasks = load_generation_tasks(source.path, source.domains)
    out: list[Candidate] = []
    skipped = 0
    for domain in sorted({t.domain for t in tasks}):
        mine = [t for t in tasks if t.domain == domain]
        pool = pooled_corpus(mine, domain)
        ranked = bm25_negatives(pool, {t.id: Query(t.id, t.question) for t in mine}, fmt.contexts + 30)
        for t in mine:
            add = _adder(out, fmt, source.tasks, "mtrag", t.id, t.question)
            gold = list(t.contexts)
            gold_ids = {doc.id for doc in gold}
            negatives = [pool[d] for d in ranked.get(t.id, []) if d not in gold_ids]
            if t.answerable and gold and t.targets:
                answer = t.targets[0]

                def context_qa(t: Any = t, gold: list[Document] = gold, answer: str = answer) -> Any:
                    shown = gold[: fmt.contexts]
                    return fmt.qa(t.question, shown, answer, range(1, len(shown) + 1), history=t.history)

                def rag_qa(
                    variant: int,
                    t: Any = t,
                    gold: list[Document] = gold,
                    neg: list[Document] = negatives,
                    a: str = answer,
                ):
                    shown, cited = fmt.mix(gold, neg, variant, "mtrag-rag", t.id)
                    return fmt.qa(t.question, shown, a, cited, history=t.history)

                def rag_ranking(
                    variant: int, t: Any = t, gold: list[Document] = gold, neg: list[Document] = negatives
                ) -> Any:
                    shown, relevant = fmt.mix(gold, neg, variant, "mtrag-rank", t.id)
                    return fmt.rag_ranking(t.question, shown, relevant)

                add("context_qa", t.id, context_qa)
                add("rag_qa", t.id, rag_qa)
                add("rag_ranking", t.id, rag_ranking)
                shown, cited = fmt.retrieved([pool[d] for d in ranked.get(t.id, [])], gold_ids)
                if cited:
                    add("retrieved_qa", t.id, partial(_qa_maker, fmt, t.question, shown, answer, cited, (), t.history))
            elif t.answerability == "UNANSWERABLE" and source.unanswerable and negatives:

                def abstain(variant: int, t: Any = t, neg: list[Document] = negatives) -> Any:
                    shown, _ = fmt.mix([], neg, variant, "mtrag-abstain", t.id)
                    return fmt.qa(t.question, shown, fmt.qa_template.abstain, history=t.history)

                add("rag_qa", t.id, abstain)
            else:
                skipped += 1
    if skipped:
        notes.append(f"mtrag: {skipped} tasks skipped (underspecified, unanswerable when disabled, or no passages)")
    return out


def scifact_dev(data: Any, source: Any) -> list[str]:
    """The judged SciFact train queries ``dev_queries`` holds out of the blend (see :func:`split_dev`)."""
    return split_dev(data.qrels, data.queries, source.dev_queries, source.dev_seed)[1] if source.dev_queries else []


def scifact_dev_queries(source: Any) -> dict[str, Query]:
    """The dev queries of ``source`` (empty without ``dev_queries``), read from its train split."""
    if not source.dev_queries:
        return {}
    queries, _ = read_queries(Path(source.path) / QUERIES_FILE)  # no corpus: the blend's guard needs only these
    qrels = read_qrels(Path(source.path) / "qrels" / "train.tsv", beir_directory=True)
    dev = split_dev(qrels, queries, source.dev_queries, source.dev_seed)[1]
    return {qid: queries[qid] for qid in dev}


def scifact_train_queries(data: Any, source: Any) -> dict[str, Query]:
    """The judged SciFact train queries the blend may use: all but the dev ones."""
    dev = set(scifact_dev(data, source))
    return {qid: q for qid, q in data.judged_queries().items() if qid not in dev}


def scifact(source: Any, fmt: Formatter, notes: list[str]) -> list[Candidate]:
    """SciFact ``qrels/train.tsv``: ranking pairs (positive True, BM25-mined negatives False) and rag_ranking."""
    data = load_beir(source.path, split="train")
    queries = scifact_train_queries(data, source)
    if source.dev_queries:
        notes.append(f"scifact: {source.dev_queries} judged train queries held out as dev (seed {source.dev_seed})")
    corpus = data.corpus
    ranked = bm25_negatives(corpus, queries, source.negative_window[1])
    run = {q: {d: float(-rank) for rank, d in enumerate(ids)} for q, ids in ranked.items()}  # BM25 order kept
    mined = mine_negatives(
        queries,
        run,
        {qid: data.qrels[qid] for qid in queries},  # the dev queries are out of the blend, not "skipped"
        corpus,
        num_negatives=source.num_negatives,
        window=source.negative_window,
        seed=fmt.seed,
    )
    notes.extend(f"scifact: {w}" for w in mined.warnings)
    out: list[Candidate] = []
    seen: set[tuple[str, str]] = set()  # a query with several positives may draw the same negative twice
    for ex in mined.examples:
        add = _adder(out, fmt, source.tasks, "scifact", ex.query_id, ex.query)
        pairs = [(ex.positive_id, ex.positive, True)] + [
            (d, t, False) for d, t in zip(ex.negative_ids, ex.negatives, strict=True)
        ]
        for doc_id, text, relevant in pairs:
            if (ex.query_id, doc_id) not in seen:
                seen.add((ex.query_id, doc_id))
                make = _ranking_maker(fmt, ex.query, text, relevant)
                add("ranking", f"{ex.query_id}-{doc_id}", make, "True" if relevant else "False")
    start, end = source.negative_window
    for qid, query in queries.items():
        relevant = {d for d, g in data.qrels[qid].items() if g > 0}
        gold = [corpus[d] for d in sorted(relevant) if d in corpus]
        window = [corpus[d] for d in list(run.get(qid, {}))[start - 1 : end] if d not in relevant]
        negatives = fmt.rng("scifact-rag", qid).sample(window, min(len(window), fmt.contexts))
        if not gold or not negatives:
            continue

        def rag_ranking(
            variant: int, q: Query = query, gold: list[Document] = gold, neg: list[Document] = negatives
        ) -> Any:
            shown, rel = fmt.mix(gold, neg, variant, "scifact-rank", q.id)
            return fmt.rag_ranking(q.text, shown, rel)

        _adder(out, fmt, source.tasks, "scifact", qid, query.text)("rag_ranking", qid, rag_ranking)
    return out


def qa_jsonl(source: Any, fmt: Formatter, notes: list[str]) -> list[Candidate]:
    """User QA JSONL (see :class:`rankwise.config.rankrag_blend.QAJsonlSource` for the fields)."""
    path = Path(source.path)
    rows: list[tuple[int, str, str, str, list[Document], list[int]]] = []
    for line, record in iter_jsonl(path):
        question = require_str(path, line, record, "question")
        qid = require_str(path, line, record, "id", optional=True) or f"line{line}"
        answers = record.get("answers", [record.get("answer")])
        if not isinstance(answers, list) or not answers or not isinstance(answers[0], str):
            raise DataError(path, "field 'answer' (a string) or 'answers' (a list of strings) is required", line)
        raw = record.get("passages")
        if not isinstance(raw, list) or not raw:
            raise DataError(path, "field 'passages' must be a non-empty list", line)
        passages = []
        for i, p in enumerate(raw):
            if isinstance(p, str):
                passages.append(Document(f"{qid}#{i}", "", p))
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                passages.append(Document(f"{qid}#{i}", str(p.get("title") or ""), p["text"]))
            else:
                raise DataError(path, f"passages[{i}] must be a string or {{'title', 'text'}}", line)
        gold = record.get("gold", [])
        if not isinstance(gold, list) or not all(isinstance(g, int) and 0 <= g < len(passages) for g in gold):
            raise DataError(path, "field 'gold' must list 0-based indexes of 'passages'", line)
        rows.append((line, qid, question, answers[0], passages, gold))
    pool = {doc.id: doc for row in rows for doc in row[4]}
    ranked = bm25_negatives(pool, {r[1]: Query(r[1], r[2]) for r in rows}, fmt.contexts + 30)
    out: list[Candidate] = []
    for line, qid, question, answer, passages, gold in rows:
        support = [passages[g] for g in gold] or passages
        mine = {doc.id for doc in passages}
        negatives = [pool[d] for d in ranked.get(qid, []) if d not in mine]
        add = _adder(out, fmt, source.tasks, "qa_jsonl", qid, question, f"{path}, line {line}")
        cite = [g + 1 for g in gold]
        add("context_qa", qid, lambda q=question, p=passages, a=answer, c=cite: fmt.qa(q, p[: fmt.contexts], a, c))

        def rag_qa(variant: int, q: str = question, s: list = support, n: list = negatives, a: str = answer, g=gold):
            shown, cited = fmt.mix(s, n, variant, "qa-rag", q)
            return fmt.qa(q, shown, a, cited if g else ())

        add("rag_qa", qid, rag_qa)
    return out


def triples(source: Any, fmt: Formatter, notes: list[str]) -> list[Candidate]:
    """MS MARCO-style triples: each line gives one True and one False ranking example."""
    path = Path(source.path)
    rows: list[tuple[int, str, str, str, str]] = []
    if path.suffix.lower() == ".jsonl":
        for line, record in iter_jsonl(path):
            values = [require_str(path, line, record, key) for key in ("query", "positive", "negative")]
            qid = require_str(path, line, record, "query_id", optional=True) or f"line{line}"
            rows.append((line, qid, *values))
    else:
        for line, text in enumerate(read_lines(path), start=1):
            if not text.strip():
                continue
            parts = text.split("\t")
            if len(parts) != 3:
                raise DataError(
                    path, f"expected 3 tab-separated fields (query, positive, negative), got {len(parts)}", line
                )
            rows.append((line, f"line{line}", *parts))
    out: list[Candidate] = []
    for line, qid, query, positive, negative in rows:
        add = _adder(out, fmt, source.tasks, "triples", qid, query, f"{path}, line {line}")
        add("ranking", f"{qid}-pos", _ranking_maker(fmt, query, positive, True), "True")
        add("ranking", f"{qid}-neg", _ranking_maker(fmt, query, negative, False), "False")
    return out


def _qa_maker(fmt: Formatter, question: str, shown: list, answer: str, cited: list, marks: Any, history: Any) -> Any:
    return fmt.qa(question, shown, answer, cited, marks, history)


def _ranking_maker(fmt: Formatter, question: str, passage: str, relevant: bool) -> Callable[[], Any]:
    return lambda: fmt.ranking(question, passage, relevant)


def _adder(
    out: list[Candidate], fmt: Formatter, tasks: Sequence[str], source: str, qid: str, question: str, where: str = ""
) -> Callable[..., None]:
    """``add(task, key, make, label=None)`` appends a candidate when ``task`` is one of the source's tasks;
    ``rag_qa``/``rag_ranking`` makers take the variant number and give ``fmt.variants`` candidates."""

    def add(task: str, key: str, make: Callable[..., Any], label: str | None = None) -> None:
        if task not in tasks:
            return
        if task not in ("rag_qa", "rag_ranking"):
            out.append(Candidate(task, source, qid, question, key, make, label, where))
            return
        for v in range(fmt.variants):
            out.append(
                Candidate(task, source, qid, question, f"{key}-v{v}" if v else key, partial(make, v), label, where)
            )

    return add


READERS: dict[str, Callable[..., Any]] = {"mtrag": mtrag, "scifact": scifact, "qa_jsonl": qa_jsonl, "triples": triples}
