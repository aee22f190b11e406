"""The MT-RAG loader on the real data in $RANKWISE_DATA/mtrag, plus malformed-input errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rankwise.data import mtrag
from rankwise.errors import DataError


@pytest.fixture(scope="module")
def mtrag_dir(data_root: Path) -> Path:
    return data_root / "mtrag"


@pytest.fixture(scope="module")
def tasks(mtrag_dir: Path) -> list[mtrag.MTRAGTask]:
    return mtrag.load_generation_tasks(mtrag_dir)


def test_generation_tasks_and_answerability(tasks) -> None:
    assert len(tasks) == 507
    assert Counter(t.answerability for t in tasks) == {
        "ANSWERABLE": 285,
        "UNANSWERABLE": 97,
        "UNDERSPECIFIED": 78,
        "PARTIAL": 47,
    }
    assert Counter(t.domain for t in tasks) == {"govt": 157, "clapnq": 142, "cloud": 131, "fiqa": 77}
    first = tasks[0]
    assert first.id == "18ef26058d321c5d96ca3ebf8117789e<::>7"
    assert first.question.startswith("I mean current EV's battery")
    assert first.history[0] == "user: How to pay with cash when car shopping?"
    assert first.history[1].startswith("agent: When paying with cash")
    assert len(first.history) == 12 and first.turn == 7
    assert first.targets[0].startswith("The longevity of EV batteries")
    assert first.answerable and first.query().history == first.history
    assert all(not t.contexts for t in tasks if t.answerability == "UNANSWERABLE")


def test_pooled_corpora_and_qrels(mtrag_dir, tasks) -> None:
    sizes, judged = {}, {}
    for domain in mtrag.DOMAINS:
        dataset = mtrag.load_pooled_retrieval(mtrag_dir, domain, tasks)
        assert dataset.warnings == [mtrag.POOLED_NOTE]  # nothing dropped: every judged passage is in the pool
        assert "POOLED EVALUATION" in dataset.warnings[0]
        assert dataset.name == f"mtrag-{domain}-pooled"
        assert set(dataset.queries) == set(dataset.qrels)
        assert all(d in dataset.corpus for docs in dataset.qrels.values() for d in docs)
        sizes[domain], judged[domain] = len(dataset.corpus), len(dataset.qrels)
    assert sizes == {"clapnq": 312, "cloud": 248, "fiqa": 157, "govt": 435}
    assert judged == {"clapnq": 83, "cloud": 86, "fiqa": 58, "govt": 105}
    assert sum(judged.values()) == 332


def test_domain_names_and_pool_by_collection(tasks) -> None:
    assert mtrag.canonical_domain("ibmcloud") == "cloud"
    assert len(mtrag.pooled_corpus(tasks, "ibmcloud")) == 248
    with pytest.raises(DataError, match="unknown MT-RAG domain 'banking'"):
        mtrag.canonical_domain("banking")


def test_human_rewrite_subset(mtrag_dir, tasks) -> None:
    corpus = mtrag.pooled_corpus(tasks, "govt")
    queries, qrels, warnings = mtrag.load_human_rewrite_subset(mtrag_dir, "govt", corpus)
    assert set(queries) == {"last_turn", "full_history", "human"}
    assert len(qrels) == 46 and all(set(q) == set(qrels) for q in queries.values())
    assert all(d in corpus for docs in qrels.values() for d in docs)
    assert "46 of 201" in warnings[1]
    qid = next(q for q, v in queries["full_history"].items() if v.history)
    assert queries["full_history"][qid].text.endswith(queries["last_turn"][qid].text)
    assert queries["human"][qid].history == queries["full_history"][qid].history


def test_human_rewrites_and_their_data_set(mtrag_dir, tasks) -> None:
    rewrites = mtrag.load_human_rewrites(mtrag_dir, "govt")
    assert len(rewrites) == 201 and all(r and not r.startswith("|user|") for r in rewrites.values())
    queries, qrels, _ = mtrag.load_human_rewrite_subset(mtrag_dir, "govt", mtrag.pooled_corpus(tasks, "govt"))
    assert all(rewrites[q] == query.text for q, query in queries["human"].items())
    dataset = mtrag.load_human_retrieval(mtrag_dir, "govt", tasks)
    assert dataset.queries == queries["last_turn"] and dataset.qrels == qrels
    assert len(dataset.corpus) == 435 and "POOLED" in dataset.warnings[0] and "46 of 201" in dataset.warnings[1]
    changed = [q for q, query in dataset.queries.items() if rewrites[q] != query.text]
    assert len(changed) > len(dataset.queries) // 2  # the humans rewrote most non-standalone turns


def test_answerability_probe_is_balanced_seeded_and_keeps_unjudged_tasks(mtrag_dir, tasks) -> None:
    probe = mtrag.load_answerability_probe(mtrag_dir, "cloud")
    by_id = {t.id: t for t in tasks}
    labels = Counter(by_id[q].answerability for q in probe.queries)
    assert labels == {"UNANSWERABLE": 36, "ANSWERABLE": 36}
    order = [t.id for t in tasks if t.id in probe.queries]
    assert list(probe.queries) == order  # file order, not sample order
    assert all(by_id[q].answerability == "ANSWERABLE" for q in probe.qrels)
    assert set(probe.qrels) < set(probe.queries)
    assert probe.warnings[1] == (
        "cloud: answerability probe = all 36 UNANSWERABLE tasks + 36 of 81 ANSWERABLE tasks sampled with seed 0"
    )
    assert mtrag.load_answerability_probe(mtrag_dir, "cloud").queries.keys() == probe.queries.keys()
    other = mtrag.load_answerability_probe(mtrag_dir, "cloud", seed=1)
    assert other.queries.keys() != probe.queries.keys()


def _write_task(root: Path, record: dict) -> Path:
    path = root / mtrag.REFERENCE_FILE
    path.parent.mkdir(parents=True)
    good = {
        "task_id": "c<::>1",
        "conversation_id": "c",
        "turn": "1",
        "Collection": "fiqa",
        "input": [{"speaker": "user", "text": "q?"}],
        "contexts": [{"document_id": "d", "text": "t"}],
        "targets": [{"text": "a"}],
        "answerability": ["ANSWERABLE"],
    }
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, **record}) + "\n")
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"task_id": "c<::>1"}, "appears twice"),
        ({"task_id": "c<::>2", "answerability": ["MAYBE"]}, "'answerability' must be one of"),
        ({"task_id": "c<::>2", "input": [{"speaker": "agent", "text": "hi"}]}, "last input turn"),
        ({"task_id": "c<::>2", "Collection": "banking"}, "unknown MT-RAG domain"),
        ({"task_id": "c<::>2", "contexts": [{"text": "no id"}]}, r"contexts\[0\] needs 'document_id'"),
    ],
)
def test_malformed_tasks_name_file_and_line(tmp_path: Path, record: dict, message: str) -> None:
    path = _write_task(tmp_path, record)
    with pytest.raises(DataError, match=message) as info:
        mtrag.load_generation_tasks(tmp_path)
    assert str(path) in str(info.value)
    if "twice" not in message and "domain" not in message:
        assert info.value.line == 2


def test_not_an_mtrag_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not an MT-RAG directory"):
        mtrag.load_generation_tasks(tmp_path)
