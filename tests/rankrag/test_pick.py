"""SciFact dev queries held out of the RankRAG blend, the first-stage weight picked on them after training, and
``rerank: {kind: rankrag, interpolate: auto}`` applying it (tiny random Llama, real SciFact)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rankwise.config.rankrag_blend import from_mapping
from rankwise.config.rankrag_train import RankRAGTrainConfig
from rankwise.data.beir import load_beir
from rankwise.errors import RankwiseError
from rankwise.rankrag.blend import build_blend
from rankwise.train.dev import split_dev


def test_the_dev_queries_stay_out_of_the_blend(data_root: Path, tmp_path: Path) -> None:
    from rankwise.config.models import load_tokenizer

    scifact = data_root / "scifact"
    config = from_mapping(
        {"size": 100_000, "ranking_fraction": 1.0, "scifact": {"path": str(scifact), "dev_queries": 50}}
    )
    examples, summary = build_blend(config, load_tokenizer("smollm2"))
    train = load_beir(scifact, split="train")
    dev = set(split_dev(train.qrels, train.queries, 50, 42)[1])  # what `train reranker` holds out by default
    used = {e["query_id"] for e in examples}
    assert len(used) > 700 and not used & dev
    assert summary["dev"] == {"scifact": 50} and summary["heldout"] == {"scifact": 300}
    assert not any("not in queries" in note for note in summary["notes"])  # held out is not "skipped"
    # a user's QA file that asks a dev query is refused, as one asking a test query is
    question = train.queries[sorted(dev)[0]].text
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": question, "answer": "yes", "passages": ["some text"]}) + "\n")
    leaky = from_mapping(
        {"size": 10, "scifact": {"path": str(scifact), "dev_queries": 50}, "qa_jsonl": {"path": str(qa)}}
    )
    with pytest.raises(RankwiseError, match="SciFact dev query"):
        build_blend(leaky, load_tokenizer("smollm2"))


@pytest.fixture(scope="module")
def picked(tiny_lm_dir: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from rankwise.rankrag.train import train_rankrag

    out = tmp_path_factory.mktemp("rankrag-dev")
    config = RankRAGTrainConfig(
        output_dir=str(out),
        model=str(tiny_lm_dir),
        blend={
            "tokenizer": str(tiny_lm_dir),
            "size": 8,
            "ranking_fraction": 1.0,
            "scifact": {"path": str(data_root / "scifact"), "dev_queries": 3},
        },
        max_steps=1,
        batch_size=4,
        dtype="float32",
        save_steps=1,
        logging_steps=1,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        interpolation_depth=4,
    )
    return {"config": config, "out": out, "metrics": train_rankrag(config, show_progress=False)}


def test_training_ends_by_picking_the_weight_on_dev(picked: dict[str, Any]) -> None:
    from rankwise.build import interpolation_weight
    from rankwise.config.sections import RankRAGRerankConfig

    pick = picked["metrics"]["interpolation"]
    assert pick["queries"] == 3 and pick["depth"] == 4 and 0 <= pick["bm25_dev_ndcg10"] <= 1
    by_weight = pick["dev_ndcg@10_by_weight"]
    assert len(by_weight) == 11 and pick["dev_ndcg@10"] == max(by_weight.values())
    assert by_weight[f"{pick['weight']:.1f}"] == pick["dev_ndcg@10"]
    model = picked["out"] / "model"
    section = RankRAGRerankConfig(model=str(model), interpolate="auto")
    assert interpolation_weight(section) == (pick["weight"], "first")
    saved = json.loads((picked["out"] / "metrics.json").read_text())
    assert saved["interpolation"] == pick


def test_a_model_trained_before_the_pick_gets_it_on_a_rerun(
    picked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankwise.rankrag import pick as pick_module
    from rankwise.rankrag.train import train_rankrag
    from rankwise.rerank.cross_encoder import TRAINED_SETTINGS

    out, config = picked["out"], picked["config"]
    metrics_file, settings_file = out / "metrics.json", out / "model" / TRAINED_SETTINGS
    before = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({k: v for k, v in before.items() if k != "interpolation"}))
    settings_file.unlink()
    again = train_rankrag(config, show_progress=False)
    assert again["already_done"] and again["interpolation"] == before["interpolation"]
    assert json.loads(metrics_file.read_text())["interpolation"] == before["interpolation"]
    assert settings_file.is_file()

    def no_scoring(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished pick was scored again")

    monkeypatch.setattr(pick_module, "load_rankrag", no_scoring)
    metrics_file.write_text(json.dumps({k: v for k, v in before.items() if k != "interpolation"}))
    assert train_rankrag(config, show_progress=False)["interpolation"] == before["interpolation"]


def test_an_experiment_applies_the_picked_weight(picked: dict[str, Any], hotpotqa_file: Path, tmp_path: Path) -> None:
    from rankwise.config.experiment import load_config
    from rankwise.experiment import run_experiment

    model = picked["out"] / "model"
    config = tmp_path / "fused.yaml"
    config.write_text(
        f"name: fused\ndata: {{max_queries: 2}}\nretrieve: {{bm25: {{k: 10}}}}\n"
        f"rerank: {{kind: rankrag, model: {model}, top_n: 4, dtype: float32, interpolate: auto}}\n"
    )
    [out] = run_experiment(load_config(config), [str(hotpotqa_file)], tmp_path / "out", show_progress=False, log=str)
    stage = json.loads((out / "metrics.json").read_text())["stages"]["rerank"]["timing"]
    assert stage["interpolate"] == picked["metrics"]["interpolation"]["weight"]


def test_auto_is_refused_where_no_trainer_picks(tmp_path: Path) -> None:
    from rankwise.build import interpolation_weight
    from rankwise.config.experiment import ConfigError, load_config
    from rankwise.config.sections import RankRAGRerankConfig

    config = tmp_path / "llm.yaml"
    config.write_text("name: x\nretrieve: {bm25: {}}\nrerank: {kind: llm, interpolate: auto}\n")
    with pytest.raises(ConfigError, match="trained cross-encoder or RankRAG model"):
        load_config(config)
    untrained = RankRAGRerankConfig(model=str(tmp_path), interpolate="auto")  # no pick beside the weights
    with pytest.raises(RankwiseError, match="rankrag train"):
        interpolation_weight(untrained)


def test_the_trained_model_is_freed_before_the_pick_loads_its_own(
    picked: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pick loads the saved model afresh; the trainer's copy (and its optimizer) must be gone by then, or the
    process holds both (session 15's 150-step run: 15-16 GB RSS during the pick)."""
    import weakref

    from transformers import TrainerCallback

    from rankwise.rankrag import pick as pick_module
    from rankwise.rankrag.train import train_rankrag

    seen: list[weakref.ref] = []

    class Watch(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen.append(weakref.ref(model))

    original = pick_module.pick_interpolation
    alive_at_pick: list[bool] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        alive_at_pick.append(seen[0]() is not None)
        return original(*args, **kwargs)

    monkeypatch.setattr(pick_module, "pick_interpolation", watched)
    config = picked["config"].model_copy(update={"output_dir": str(tmp_path / "out")})
    metrics = train_rankrag(config, show_progress=False, callbacks=[Watch()])
    assert seen and alive_at_pick == [False] and "interpolation" in metrics
