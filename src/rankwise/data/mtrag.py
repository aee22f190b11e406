"""IBM MT-RAG (multi-turn RAG) tasks, evaluated on a POOLED corpus per domain.

Files read (paths relative to the ``mtrag`` directory of ``$RANKWISE_DATA``):

- ``mtragun-human/generation_tasks/reference.jsonl``: 507 generation tasks (MT-RAG-UN). Each holds the
  conversation (``input``: alternating user/agent turns ending with the user's question), the reference passages
  (``contexts``), the reference answer (``targets``), an answerability label (ANSWERABLE, UNANSWERABLE,
  UNDERSPECIFIED, PARTIAL) and the domain (``Collection``: clapnq, ibmcloud, fiqa, govt).
- ``mtragun-human/retrieval_tasks/qrels/<domain>.tsv``: relevance judgements for 332 of those tasks.
- ``mtrag-human/retrieval_tasks/<domain>/<domain>_{lastturn,questions,rewrite}.jsonl`` + ``qrels/dev.tsv``: the
  original MT-RAG retrieval tasks with the benchmark's own human rewrites (a different set of tasks).

The passage corpora (49k-183k passages per domain) are not available offline, so the corpus of a domain is the
**pool** of all reference passages of that domain's generation tasks (157-435 passages). Every judged passage of
the MT-RAG-UN qrels is in its pool, so those tasks can be scored — but against a few hundred candidates, not the
full corpus: the numbers are not comparable with published full-corpus MT-RAG results. Every data set built
here carries :data:`POOLED_NOTE` in its warnings, and ``rankwise rag`` writes it into ``metrics.json``.

Conversation history is given to :class:`~rankwise.types.Query` as turns prefixed ``"user: "`` / ``"agent: "``
(see :func:`format_turn`); the query text is the last user turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankwise.data._io import iter_jsonl, require_str
from rankwise.data.trec import read_qrels
from rankwise.errors import DataError
from rankwise.types import Dataset, Document, Qrels, Query

# Domain name (as in the qrels file names) -> the generation tasks' "Collection" value.
DOMAINS: dict[str, str] = {"clapnq": "clapnq", "cloud": "ibmcloud", "fiqa": "fiqa", "govt": "govt"}
ANSWERABILITY = ("ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED")
HUMAN_QUERY_FILES = {"last_turn": "lastturn", "full_history": "questions", "human": "rewrite"}

POOLED_NOTE = (
    "POOLED EVALUATION: the MT-RAG passage corpora are not available offline, so each domain's corpus is the pool "
    "of all reference passages of its generation tasks (a few hundred passages, not the 49k-183k of the real "
    "corpus); scores are not comparable with full-corpus MT-RAG results."
)
REFERENCE_FILE = Path("mtragun-human") / "generation_tasks" / "reference.jsonl"


def format_turn(speaker: str, text: str) -> str:
    """One history entry: ``"user: text"`` or ``"agent: text"``."""
    return f"{speaker.strip().lower()}: {text.strip()}"


@dataclass(frozen=True)
class MTRAGTask:
    id: str
    conversation_id: str
    domain: str
    turn: int
    question: str
    history: tuple[str, ...]
    answerability: str
    targets: tuple[str, ...]
    contexts: tuple[Document, ...]
    question_types: tuple[str, ...] = ()
    multi_turn: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        """ANSWERABLE or PARTIAL: a reference answer grounded in passages exists."""
        return self.answerability in ("ANSWERABLE", "PARTIAL")

    def query(self) -> Query:
        return Query(id=self.id, text=self.question, history=self.history)


def _root(path: str | Path) -> Path:
    """The ``mtrag`` directory from itself, its ``mtragun-human`` folder, or the reference.jsonl file."""
    path = Path(path)
    if path.is_file():
        candidate = path.parents[2] if len(path.parents) > 2 else path.parent
        if (candidate / REFERENCE_FILE).is_file():
            return candidate
    for candidate in (path, path.parent, path / "mtrag"):
        if (candidate / REFERENCE_FILE).is_file():
            return candidate
    raise DataError(path, f"not an MT-RAG directory: {REFERENCE_FILE} not found under it")


def canonical_domain(name: str, where: str | Path = "MT-RAG") -> str:
    key = name.strip().lower()
    for domain, collection in DOMAINS.items():
        if key in (domain, collection):
            return domain
    raise DataError(where, f"unknown MT-RAG domain '{name}' (known: {', '.join(DOMAINS)})")


def _texts(path: Path, line: int, record: dict[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(path, f"field '{key}' must be a list of strings", line=line)
    return tuple(value)


def _task(path: Path, line: int, record: dict[str, Any]) -> MTRAGTask:
    task_id = require_str(path, line, record, "task_id")
    turns = record.get("input")
    if not isinstance(turns, list) or not turns:
        raise DataError(path, f"task {task_id}: field 'input' must be a non-empty list of turns", line=line)
    parsed: list[tuple[str, str]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("text"), str) or "speaker" not in turn:
            raise DataError(path, f"task {task_id}: input[{i}] needs 'speaker' and 'text'", line=line)
        parsed.append((str(turn["speaker"]), turn["text"]))
    if parsed[-1][0] != "user":
        raise DataError(path, f"task {task_id}: the last input turn must be the user's question", line=line)
    contexts = []
    for i, ctx in enumerate(record.get("contexts") or []):
        if not isinstance(ctx, dict) or not isinstance(ctx.get("text"), str) or "document_id" not in ctx:
            raise DataError(path, f"task {task_id}: contexts[{i}] needs 'document_id' and 'text'", line=line)
        contexts.append(Document(str(ctx["document_id"]), str(ctx.get("title") or ""), ctx["text"].strip()))
    labels = _texts(path, line, record, "answerability")
    if len(labels) != 1 or labels[0] not in ANSWERABILITY:
        raise DataError(path, f"task {task_id}: 'answerability' must be one of {ANSWERABILITY}", line=line)
    targets = record.get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, dict) and "text" in t for t in targets):
        raise DataError(path, f"task {task_id}: 'targets' must be a list of {{'text': ...}}", line=line)
    try:
        turn_number = int(record.get("turn", len(parsed)))
    except (TypeError, ValueError):
        raise DataError(path, f"task {task_id}: 'turn' must be an integer", line=line) from None
    return MTRAGTask(
        id=task_id,
        conversation_id=str(record.get("conversation_id", task_id.split("<::>")[0])),
        domain=canonical_domain(require_str(path, line, record, "Collection"), path),
        turn=turn_number,
        question=parsed[-1][1].strip(),
        history=tuple(format_turn(s, t) for s, t in parsed[:-1]),
        answerability=labels[0],
        targets=tuple(str(t["text"]) for t in targets),
        contexts=tuple(contexts),
        question_types=_texts(path, line, record, "Question Type"),
        multi_turn=_texts(path, line, record, "Multi-Turn"),
    )


def load_generation_tasks(path: str | Path, domains: Iterable[str] | None = None) -> list[MTRAGTask]:
    """The MT-RAG-UN generation tasks (all 507, or those of ``domains``), in file order."""
    file = _root(path) / REFERENCE_FILE
    wanted = {canonical_domain(d, file) for d in domains} if domains is not None else set(DOMAINS)
    tasks = [_task(file, line, record) for line, record in iter_jsonl(file)]
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise DataError(file, f"task id {task.id} appears twice")
        seen.add(task.id)
    return [t for t in tasks if t.domain in wanted]


def pooled_corpus(tasks: Iterable[MTRAGTask], domain: str) -> dict[str, Document]:
    """All reference passages of ``domain``'s tasks, by document id (first appearance order)."""
    domain = canonical_domain(domain, "pooled corpus")
    pool: dict[str, Document] = {}
    for task in tasks:
        if task.domain != domain:
            continue
        for doc in task.contexts:
            known = pool.get(doc.id)
            if known is not None and known.text != doc.text:
                raise DataError(REFERENCE_FILE, f"passage {doc.id} has two different texts (task {task.id})")
            pool.setdefault(doc.id, doc)
    return pool


def load_pooled_qrels(path: str | Path, domain: str) -> Qrels:
    domain = canonical_domain(domain, path)
    return read_qrels(_root(path) / "mtragun-human" / "retrieval_tasks" / "qrels" / f"{domain}.tsv")


def load_pooled_retrieval(path: str | Path, domain: str, tasks: list[MTRAGTask] | None = None) -> Dataset:
    """MT-RAG-UN retrieval for one domain: pooled corpus, the judged tasks as queries (with history), qrels.

    Judgements naming a passage outside the pool, or a task that is not a generation task, are dropped and
    counted in the warnings (none are, in the published data); the first warning is :data:`POOLED_NOTE`.
    """
    domain = canonical_domain(domain, path)
    tasks = tasks if tasks is not None else load_generation_tasks(path, [domain])
    tasks = [t for t in tasks if t.domain == domain]
    corpus = pooled_corpus(tasks, domain)
    by_id = {t.id: t for t in tasks}
    raw = load_pooled_qrels(path, domain)
    warnings = [POOLED_NOTE]
    qrels: Qrels = {}
    outside: list[str] = []
    for qid, docs in raw.items():
        if qid not in by_id:
            outside.append(qid)
            continue
        kept = {d: g for d, g in docs.items() if d in corpus}
        outside.extend(f"{qid}/{d}" for d in docs if d not in corpus)
        if kept:
            qrels[qid] = kept
    if outside:
        warnings.append(f"{domain}: dropped {len(outside)} judgements outside the pool (e.g. {outside[0]})")
    queries = {qid: by_id[qid].query() for qid in qrels}
    return Dataset(name=f"mtrag-{domain}-pooled", corpus=corpus, queries=queries, qrels=qrels, warnings=warnings)


def load_human_rewrite_subset(
    path: str | Path, domain: str, corpus: dict[str, Document]
) -> tuple[dict[str, dict[str, Query]], Qrels, list[str]]:
    """The original MT-RAG retrieval tasks of ``domain`` restricted to a pooled ``corpus``.

    Returns ``(queries by strategy, qrels, warnings)``: strategies ``last_turn``, ``full_history`` (all user
    turns) and ``human`` (the benchmark's rewrites), each for the tasks with at least one judged passage inside
    the pool; qrels keep only in-pool passages. These tasks differ from the MT-RAG-UN ones and only a small
    subset has in-pool judgements, which the warnings state with counts.
    """
    domain = canonical_domain(domain, path)
    base = _root(path) / "mtrag-human" / "retrieval_tasks" / domain
    raw = read_qrels(base / "qrels" / "dev.tsv")
    qrels = {q: kept for q, docs in raw.items() if (kept := {d: g for d, g in docs.items() if d in corpus})}
    turns_of: dict[str, dict[str, list[str]]] = {}
    for strategy, suffix in HUMAN_QUERY_FILES.items():
        file = base / f"{domain}_{suffix}.jsonl"
        turns_of[strategy] = {}
        for line, record in iter_jsonl(file):
            qid = require_str(file, line, record, "_id")
            turns = [t.strip() for t in require_str(file, line, record, "text").split("\n") if t.strip()]
            if qid in qrels and turns:
                turns_of[strategy][qid] = [t.removeprefix("|user|:").strip() for t in turns]
    # The history (earlier user turns) of every strategy comes from the all-questions file.
    history = {q: tuple(format_turn("user", t) for t in ts[:-1]) for q, ts in turns_of["full_history"].items()}
    queries: dict[str, dict[str, Query]] = {}
    for strategy, found in turns_of.items():
        queries[strategy] = {
            qid: Query(qid, " ".join(ts) if strategy == "full_history" else ts[-1], history.get(qid, ()))
            for qid, ts in found.items()
        }
    total = sum(1 for _ in raw)
    warnings = [
        POOLED_NOTE,
        f"{domain}: human-rewrite subset = {len(qrels)} of {total} MT-RAG retrieval tasks with a judged passage "
        f"in the pool ({sum(len(d) for d in qrels.values())} of {sum(len(d) for d in raw.values())} judgements)",
    ]
    return queries, qrels, warnings


def load_human_retrieval(path: str | Path, domain: str, tasks: list[MTRAGTask] | None = None) -> Dataset:
    """The human-rewrite subset of ``domain`` (:func:`load_human_rewrite_subset`) as a data set: the pooled
    corpus, the last turns as queries (earlier user turns as history) and the in-pool qrels.

    Its queries are the original MT-RAG tasks, not the MT-RAG-UN ones, so scores on it compare strategies with
    each other (including ``human``, :func:`load_human_rewrites`), not with :func:`load_pooled_retrieval`'s.
    """
    domain = canonical_domain(domain, path)
    tasks = tasks if tasks is not None else load_generation_tasks(path, [domain])
    corpus = pooled_corpus(tasks, domain)
    by_strategy, qrels, warnings = load_human_rewrite_subset(path, domain, corpus)
    return Dataset(f"mtrag-human-{domain}-pooled", corpus, by_strategy["last_turn"], qrels, warnings)


def load_human_rewrites(path: str | Path, domain: str) -> dict[str, str]:
    """The benchmark's human rewrites of ``domain``'s original MT-RAG retrieval tasks: task id -> rewrite.

    Read from ``mtrag-human/retrieval_tasks/<domain>/<domain>_rewrite.jsonl`` (``_id``, ``text`` as
    ``"|user|: question"``); every task of the file, judged in the pool or not.
    """
    domain = canonical_domain(domain, path)
    file = _root(path) / "mtrag-human" / "retrieval_tasks" / domain / f"{domain}_{HUMAN_QUERY_FILES['human']}.jsonl"
    rewrites: dict[str, str] = {}
    for line, record in iter_jsonl(file):
        qid = require_str(file, line, record, "_id")
        turns = [t.strip() for t in require_str(file, line, record, "text").split("\n") if t.strip()]
        if not turns:
            raise DataError(file, f"task {qid}: empty rewrite", line=line)
        if qid in rewrites:
            raise DataError(file, f"task id {qid} appears twice", line=line)
        rewrites[qid] = turns[-1].removeprefix("|user|:").strip()
    return rewrites


def load_answerability_probe(path: str | Path, domain: str, seed: int = 0) -> Dataset:
    """Generation tasks of ``domain`` that test abstention: every UNANSWERABLE task and a seeded random sample
    of as many ANSWERABLE ones (all of them if fewer), in file order, on the pooled corpus.

    UNANSWERABLE tasks have no judgements (their qrels stay empty); the ANSWERABLE ones keep the pooled qrels
    they have. A generator should say "insufficient context" on the first group and answer the second.
    """
    import random

    domain = canonical_domain(domain, path)
    tasks = load_generation_tasks(path, [domain])
    unanswerable = [t.id for t in tasks if t.answerability == "UNANSWERABLE"]
    answerable = [t.id for t in tasks if t.answerability == "ANSWERABLE"]
    sampled = set(random.Random(seed).sample(answerable, min(len(unanswerable), len(answerable))))
    chosen = [t for t in tasks if t.id in sampled or t.answerability == "UNANSWERABLE"]
    judged = load_pooled_retrieval(path, domain, tasks).qrels
    note = (
        f"{domain}: answerability probe = all {len(unanswerable)} UNANSWERABLE tasks + {len(sampled)} of "
        f"{len(answerable)} ANSWERABLE tasks sampled with seed {seed}"
    )
    return Dataset(
        name=f"mtrag-answerability-{domain}-pooled",
        corpus=pooled_corpus(tasks, domain),
        queries={t.id: t.query() for t in chosen},
        qrels={t.id: judged[t.id] for t in chosen if t.id in judged},
        warnings=[POOLED_NOTE, note],
    )
