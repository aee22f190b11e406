"""Cross-encoder training on MT-RAG tasks with a conversation-level split, and evaluation on the held-out
conversations only (real MT-RAG data; a tiny random BERT from a config, a few steps)."""

from __future__ import annotations

import json

import pytest

from rankwise.config.experiment import load_config as load_experiment
from rankwise.config.train_reranker import RerankerTrainConfig, load_config
from rankwise.data.mtrag import load_generation_tasks, load_pooled_qrels
from rankwise.data.mtrag_split import read_heldout_tasks, split_by_conversation
from rankwise.errors import DataError, RankwiseError
from rankwise.experiment import run_experiment
from rankwise.retrieve.rewrite import full_history
from rankwise.train.mtrag_data import mtrag_domains


def quiet(*_: object) -> None:
    return None


def test_conversation_split_keeps_each_conversation_on_one_side_and_is_deterministic():
    # 40 conversations of 1-4 turns each: the turns of one conversation must never straddle the split.
    conversation_of = {f"c{c}<::>{t}": f"c{c}" for c in range(40) for t in range(1, 2 + c % 4)}
    train, test = split_by_conversation(conversation_of, 0.25, seed=7)
    assert split_by_conversation(conversation_of, 0.25, seed=7) == (train, test)
    assert split_by_conversation(conversation_of, 0.25, seed=8) != (train, test)
    train_convs = {conversation_of[t] for t in train}
    test_convs = {conversation_of[t] for t in test}
    assert not train_convs & test_convs and len(test_convs) == 10
    assert sorted(train + test) == sorted(conversation_of)


def test_conversation_split_rejects_bad_values():
    with pytest.raises(RankwiseError, match=r"test_fraction must be in \(0, 1\)"):
        split_by_conversation({"a": "a", "b": "b"}, 1.0, seed=0)
    with pytest.raises(RankwiseError, match="at least 2 conversations"):
        split_by_conversation({"a<::>1": "a", "a<::>2": "a"}, 0.5, seed=0)


def test_mtrag_data_and_mtrag_only_keys_are_checked(tmp_path):
    assert mtrag_domains("mtrag:all") == ["clapnq", "cloud", "fiqa", "govt"]
    assert mtrag_domains("mtrag:ibmcloud, fiqa") == ["cloud", "fiqa"]
    assert mtrag_domains("/data/scifact") is None
    with pytest.raises(DataError, match="unknown MT-RAG domain 'nowhere'"):
        mtrag_domains("mtrag:nowhere")
    with pytest.raises(RankwiseError, match="names no MT-RAG domain"):
        mtrag_domains("mtrag:")
    path = tmp_path / "c.yaml"
    for body, problem in [
        ("data: mtrag:all\noutput_dir: y\ntest_fraction: 1.5\n", "'test_fraction'"),
        ("data: mtrag:all\noutput_dir: y\nquery: rewrite\n", "'query'"),
        ("data: mtrag:all\noutput_dir: y\nsplit_by: task\n", "'split_by'"),
        ("data: /data/scifact\noutput_dir: y\nquery: full_history\n", "query applies to data: mtrag:... only"),
    ]:
        path.write_text(body)
        with pytest.raises(DataError, match=problem) as info:
            load_config(path)
        assert "\n" not in str(info.value).strip()


def test_tiny_training_on_mtrag_holds_out_whole_conversations(tmp_path, data_root, tiny_cross_encoder_dir):
    from rankwise.train.reranker import train_reranker

    out = tmp_path / "run"
    config = RerankerTrainConfig(
        data="mtrag:fiqa",
        mtrag_dir=str(data_root / "mtrag"),
        test_fraction=0.3,
        query="full_history",
        output_dir=str(out),
        model=str(tiny_cross_encoder_dir),
        dev_queries=5,
        dev_depth=5,
        first_stage_depth=20,
        negative_window=(1, 20),
        num_negatives=2,
        max_length=32,
        epochs=0.2,
        batch_size=12,
        eval_steps=50,
        seed=3,
        threads=1,
        device="cpu",
        tune_interpolation=False,
    )
    metrics = train_reranker(config, show_progress=False)
    heldout = json.loads((out / "heldout.json").read_text())
    assert heldout["data"] == "mtrag:fiqa" and heldout["query"] == "full_history"
    assert metrics["heldout"] == {"fiqa": 17} and heldout["train_tasks"] == {"fiqa": 41}
    held = set(heldout["tasks"]["fiqa"])
    conversations = {t.id: t.conversation_id for t in load_generation_tasks(data_root / "mtrag", ["fiqa"])}
    assert {conversations[t] for t in held} == set(heldout["conversations"]["fiqa"])
    examples = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    trained = {conversations[e["query_id"]] for e in examples}
    assert examples and not trained & set(heldout["conversations"]["fiqa"])
    by_id = {t.id: t for t in load_generation_tasks(data_root / "mtrag", ["fiqa"])}
    assert all(e["query"] == full_history(by_id[e["query_id"]].query()).text for e in examples)
    assert any(e["query"] != by_id[e["query_id"]].question for e in examples)
    assert read_heldout_tasks(out / "heldout.json") == held
    # The same seed gives the same split.
    again = RerankerTrainConfig(**{**config.model_dump(), "output_dir": str(tmp_path / "again"), "epochs": 0.05})
    train_reranker(again, show_progress=False)
    assert json.loads((tmp_path / "again" / "heldout.json").read_text())["tasks"] == heldout["tasks"]


def test_tasks_file_evaluates_the_held_out_tasks_only(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    judged = sorted(load_pooled_qrels(data_root / "mtrag", "govt"))
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps({"tasks": {"govt": judged[:40], "fiqa": ["not-a-govt-task"]}}))
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: h\ndata: {{tasks_file: {heldout}}}\nretrieve: {{bm25: {{k: 10}}}}\n")
    [out] = run_experiment(load_experiment(path, []), ["mtrag:govt"], tmp_path / "out", show_progress=False, log=quiet)
    searched = {line.split()[0] for line in (out / "runs" / "bm25.trec").read_text().splitlines()}
    assert searched == set(judged[:40]) and len(judged) == 105
    with pytest.raises(RankwiseError, match="none of its tasks is a query of mtrag-fiqa"):
        run_experiment(load_experiment(path, []), ["mtrag:fiqa"], tmp_path / "out2", show_progress=False, log=quiet)
    heldout.write_text('{"tasks": ["a"]}')
    with pytest.raises(DataError, match="'tasks' must map each domain"):
        run_experiment(load_experiment(path, []), ["mtrag:govt"], tmp_path / "out3", show_progress=False, log=quiet)
    heldout.unlink()
    with pytest.raises(DataError, match="held-out task file not found"):
        run_experiment(load_experiment(path, []), ["mtrag:govt"], tmp_path / "out4", show_progress=False, log=quiet)
