"""Open-domain QA end to end: ``rankwise rag --dataset open-qa`` and an experiment config with ``open-qa:FILE``,
BM25 over a tiny corpus, scored by answer recall@k (and EM/F1 against any gold answer when answering)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.cli import main
from rankwise.config.experiment import load_config
from rankwise.errors import RankwiseError
from rankwise.experiment import answers, run_experiment
from rankwise.experiment.datasets import resolve_dataset
from rankwise.generate.citations import build_answer

DOCS = [
    ("d1", "Paris", "Paris is the capital of France."),
    ("d2", "Berlin", "Berlin is the capital of Germany."),
    ("d3", "Tokyo", "Tokyo is the largest city of Japan."),
    ("d4", "Rome", "Rome was founded on seven hills."),
    ("d5", "Kyoto", "Kyoto was once the seat of Japan's emperors."),
]
QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"]},
    {"id": "q2", "question": "Which city was founded on seven hills?", "answers": ["Roma", "Rome"]},
    {"id": "q3", "question": "Which largest city of Japan?", "answers": ["Kyoto"]},  # Kyoto ranks 2nd
]


def open_qa_files(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in DOCS]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return root / "questions.jsonl"


def test_rag_command_reports_answer_recall(tmp_path):
    questions = open_qa_files(tmp_path / "data")
    out = tmp_path / "out" / "bm25"
    assert main(["rag", "--dataset", "open-qa", str(questions), "--generator", "none", "--out", str(out)]) == 0
    metrics = json.loads((out / "questions" / "metrics.json").read_text())
    bm25 = metrics["stages"]["bm25"]
    assert bm25["metrics"] == {"AnswerRecall@5": 1.0, "AnswerRecall@20": 1.0, "AnswerRecall@100": 1.0}
    assert bm25["sweep"]["AnswerRecall"]["1"] == pytest.approx(2 / 3)  # q3's answer is 2nd
    assert bm25["sweep"]["AnswerRecall"]["3"] == 1.0
    per_query = json.loads((out / "questions" / "per_query.json").read_text())
    assert per_query["bm25"]["AnswerRecall@5"] == {"q1": 1.0, "q2": 1.0, "q3": 1.0}


class FirstTitle:
    """Answers with the title of passage [1], citing it."""

    def generate_batch(self, requests):
        return [build_answer(f"{r.passages[0].title} [1]", [p.id for p in r.passages]) for r in requests]


def test_experiment_config_with_open_qa_scores_answers_against_any_gold(tmp_path, monkeypatch):
    questions = open_qa_files(tmp_path / "data")
    moved = tmp_path / "elsewhere" / "corpus.jsonl"
    moved.parent.mkdir()
    (tmp_path / "data" / "corpus.jsonl").rename(moved)
    body = (
        f"name: e\ndata: {{corpus: {moved}}}\nretrieve: {{bm25: {{k: 5}}}}\n"
        "evaluate: {metrics: [AnswerRecall@1, AnswerRecall@2]}\ngenerate: {kind: local, model: smollm2, top_k: 1}\n"
    )
    (tmp_path / "e.yaml").write_text(body, encoding="utf-8")
    monkeypatch.setattr(answers, "build_generator", lambda config, progress: FirstTitle())
    [out] = run_experiment(
        load_config(tmp_path / "e.yaml"), [f"open-qa:{questions}"], tmp_path / "o", show_progress=False,
        log=lambda *_: None,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"]["bm25"]["metrics"] == {"AnswerRecall@1": pytest.approx(2 / 3), "AnswerRecall@2": 1.0}
    qa = metrics["stages"]["generate"]["metrics"]
    assert qa["em"] == pytest.approx(2 / 3) and qa["answer_in_passages"] == pytest.approx(2 / 3)  # q2 "Rome" hits


def test_bad_open_qa_arguments_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(RankwiseError, match="no such question file"):
        resolve_dataset(f"open-qa:{tmp_path / 'missing.jsonl'}")
    questions = open_qa_files(tmp_path / "data")
    (tmp_path / "data" / "corpus.jsonl").unlink()
    assert main(["rag", "--dataset", "open-qa", str(questions), "--generator", "none", "--out", str(tmp_path / "o")])
    assert "questions.jsonl: no corpus beside it" in capsys.readouterr().err
    assert main(["rag", "--dataset", "hotpotqa", str(questions), "--corpus", "x", "--out", str(tmp_path / "o")])
    assert "--corpus applies to --dataset open-qa" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "on_hotpotqa", "message"),
    [
        ("data: {format: beir}\n", False, "data.format 'beir' is not a QA file format"),
        ("data: {corpus: x.jsonl}\n", True, "data.corpus applies to -d open-qa:FILE"),
        ("evaluate: {metrics: [AnswerRecall@5]}\n", True, "AnswerRecall@k needs gold answers"),
    ],
)
def test_open_qa_options_that_do_not_fit_are_one_line_errors(tmp_path, hotpotqa_file, body, on_hotpotqa, message):
    (tmp_path / "e.yaml").write_text(f"name: e\nretrieve: {{bm25: {{k: 5}}}}\n{body}", encoding="utf-8")
    dataset = str(hotpotqa_file) if on_hotpotqa else f"open-qa:{open_qa_files(tmp_path / 'data')}"
    with pytest.raises(RankwiseError, match=message):
        run_experiment(load_config(tmp_path / "e.yaml"), [dataset], tmp_path / "o", show_progress=False, log=print)
