"""Cross-encoder training end to end on a toy BEIR data set with a tiny random BERT (seconds, no download).

The toy task: every query has five documents on its topic (so BM25 cannot tell them apart well) and only the
relevant one contains the word "evidence". A trained reranker must learn that; an untrained one is random.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from rankwise.config.train_reranker import RerankerTrainConfig, load_config
from rankwise.errors import DataError, RankwiseError

TOPICS = [
    "apple", "river", "mountain", "violin", "engine", "forest", "castle", "ocean", "desert", "garden",
    "bridge", "rocket", "island", "candle", "mirror", "pencil", "wallet", "ladder", "basket", "helmet",
    "jacket", "kettle", "lantern", "magnet", "needle", "orange", "parrot", "rabbit", "saddle", "tunnel",
]  # fmt: skip


def write_toy_beir(root: Path) -> Path:
    rng = random.Random(0)
    fillers = ["report", "notes", "study", "summary", "review"]
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for i, topic in enumerate(TOPICS):
        queries.append({"_id": f"q{i}", "text": f"what about the {topic}"})
        for j in range(5):
            words = [topic, rng.choice(fillers), rng.choice(fillers), topic]
            if j == 0:
                words.insert(rng.randrange(len(words)), "evidence")
                qrels.append(f"q{i}\td{i}_{j}\t1")
            rng.shuffle(words)
            corpus.append({"_id": f"d{i}_{j}", "title": "", "text": " ".join(words)})
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "train.tsv").write_text("\n".join(qrels) + "\n")
    return root


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_beir(tmp_path_factory.mktemp("toy-beir"))


@pytest.fixture(scope="module")
def tiny_bert(tiny_cross_encoder_dir: Path) -> Path:
    """The suite's 2-layer random BERT cross-encoder (tests/conftest.py)."""
    return tiny_cross_encoder_dir


def _config(toy_data: Path, model: Path, out: Path, **overrides) -> RerankerTrainConfig:
    settings = {
        "data": str(toy_data),
        "output_dir": str(out),
        "model": str(model),
        "dev_queries": 8,
        "dev_depth": 5,
        "first_stage_depth": 10,
        "negative_window": (1, 10),
        "num_negatives": 2,
        "loss": "bce",
        "max_length": 32,
        "epochs": 4,
        "batch_size": 12,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "eval_steps": 10,
        "logging_steps": 5,
        "seed": 3,
        "threads": 1,
        "device": "cpu",
        **overrides,
    }
    return RerankerTrainConfig(**settings)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _dev_log(out: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(row["step"], row["eval_dev_ndcg@10"]) for row in lines if "eval_dev_ndcg@10" in row]


@pytest.mark.parametrize("loss", ["bce", "softmax", "listnet"])
def test_training_changes_weights_and_improves_dev_ranking(toy_data, tiny_bert, tmp_path, loss):
    from rankwise.rerank.cross_encoder import CrossEncoderReranker
    from rankwise.train.reranker import train_reranker

    out = tmp_path / loss
    config = _config(toy_data, tiny_bert, out, loss=loss, eval_on_start=True)
    metrics = train_reranker(config, show_progress=False)

    before, after = _weights(tiny_bert), _weights(out / "model")
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert "classifier.weight" in changed and any("encoder.layer.0" in name for name in changed)

    log = _dev_log(out)
    assert log[0][0] == 0  # eval_on_start: the untrained model's dev nDCG@10
    assert metrics["best_dev_ndcg@10"] == max(value for _, value in log)
    assert metrics["best_dev_ndcg@10"] >= log[0][1] + 0.2
    assert metrics["best_dev_ndcg@10"] > 0.9
    # The saved model is the best one: re-scoring the dev split with it gives the best dev value again.
    interpolation = metrics["interpolation"]
    assert interpolation["dev_ndcg@10_by_weight"]["0.0"] == pytest.approx(metrics["best_dev_ndcg@10"], abs=1e-9)
    assert interpolation["dev_ndcg@10"] == max(interpolation["dev_ndcg@10_by_weight"].values())

    # The saved model is the best checkpoint and cross_encoder.py loads it.
    reranker = CrossEncoderReranker(str(out / "model"), show_progress=False)
    good, bad = reranker.score(
        [("what about the apple", "apple evidence notes"), ("what about the apple", "apple notes")]
    )
    assert good > bad
    assert (out / "examples.jsonl").is_file() and json.loads((out / "config.json").read_text())["loss"] == loss


class _Interrupt(TrainerCallback):
    """Simulates a kill right after the checkpoint at ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after checkpoint {self.step}")


def test_resume_after_interruption_matches_uninterrupted_run(toy_data, tiny_bert, tmp_path):
    from rankwise.train.reranker import train_reranker

    straight = train_reranker(_config(toy_data, tiny_bert, tmp_path / "straight"), show_progress=False)

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_reranker(_config(toy_data, tiny_bert, resumed_dir), show_progress=False, callbacks=[_Interrupt(20)])
    assert not (resumed_dir / "model").exists()
    resumed = train_reranker(_config(toy_data, tiny_bert, resumed_dir), show_progress=False)

    assert resumed["resumed_from"].endswith("checkpoint-20")
    assert resumed["steps"] == straight["steps"]
    assert abs(resumed["best_dev_ndcg@10"] - straight["best_dev_ndcg@10"]) <= 0.005
    a, b = _weights(tmp_path / "straight" / "model"), _weights(resumed_dir / "model")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def test_resuming_with_changed_settings_is_refused(toy_data, tiny_bert, tmp_path):
    from rankwise.train.reranker import train_reranker

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_reranker(_config(toy_data, tiny_bert, out), show_progress=False, callbacks=[_Interrupt(10)])
    with pytest.raises(RankwiseError, match="different settings \\(learning_rate\\)"):
        train_reranker(_config(toy_data, tiny_bert, out, learning_rate=1e-4), show_progress=False)


def test_config_errors_name_key_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x\noutput_dir: y\nlearning_rat: 0.1\n")
    with pytest.raises(DataError, match="'learning_rat': unknown key") as info:
        load_config(path)
    assert info.value.line == 3 and info.value.path == str(path)
    path.write_text("data: x\noutput_dir: y\nloss: hinge\n")
    with pytest.raises(DataError, match="'loss'") as info:
        load_config(path)
    assert info.value.line == 3
    path.write_text("data: x\noutput_dir: y\nnegative_window: [50, 10]\n")
    with pytest.raises(DataError, match="start <= end"):
        load_config(path)
    path.write_text("data: x\noutput_dir: y\n")
    assert load_config(path, {"epochs": 2}).epochs == 2
    path.write_text("output_dir: y\n")
    with pytest.raises(DataError, match="'data': Field required"):
        load_config(path)


def test_config_paths_expand_environment_variables(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("data: ${TOY_DATA_ROOT}/scifact\noutput_dir: out\n")
    monkeypatch.setenv("TOY_DATA_ROOT", "/data")
    assert load_config(path).data == "/data/scifact"
    monkeypatch.delenv("TOY_DATA_ROOT")
    with pytest.raises(DataError, match="'data': environment variable") as info:
        load_config(path)
    assert info.value.line == 1


def test_cli_train_reranker(toy_data, tiny_bert, tmp_path):
    import typer
    from typer.testing import CliRunner

    from rankwise.cli import train as train_cli

    config = tmp_path / "toy.yaml"
    out = tmp_path / "cli-run"
    settings = _config(toy_data, tiny_bert, out).model_dump(mode="json")
    settings["negative_window"] = list(settings["negative_window"])
    import yaml

    config.write_text(yaml.safe_dump(settings))
    app = typer.Typer()
    app.command("noop")(lambda: None)
    train_cli.register(app)
    command = ["train", "reranker", "--config", str(config), "--set", "epochs=1", "--set", "interpolation_depth=1"]
    command += ["--set", "interpolation_windows=max", "--set", "train_text=bm25_window", "--set", "dev_windows=max"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "best dev nDCG@10" in result.output
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert (out / "model" / "model.safetensors").is_file()
    # the dev-picked first-stage weight travels with the model, for `rankwise rerank --interpolate auto`
    picked = json.loads((out / "model" / "rankwise_rerank.json").read_text())
    assert picked["first_stage_weight"] == json.loads((out / "metrics.json").read_text())["interpolation"]["weight"]
    assert picked["max_length"] == settings["max_length"]
    # picked at interpolation_depth (1), not dev_depth (5): reranking one document cannot change the order,
    # so every weight scores the same and the tie goes to 0
    assert picked["picked_on"].endswith("first-stage top 1") and picked["first_stage_weight"] == 0.0
    assert picked["windows"] == "max"
    saved = json.loads((out / "config.json").read_text())
    assert (saved["train_text"], saved["dev_windows"]) == ("bm25_window", "max")
    by_weight = json.loads((out / "metrics.json").read_text())["interpolation"]["dev_ndcg@10_by_weight"]
    assert len(set(by_weight.values())) == 1


def test_tune_interpolation_prefers_the_better_ranking():
    from rankwise.train.dev import tune_interpolation

    qrels = {"q": {"a": 1}}
    good = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}  # relevant doc first
    bad = {"q": {"c": 30.0, "b": 20.0, "a": 10.0}}  # relevant doc last
    trust_reranker = tune_interpolation(good, bad, qrels)
    assert trust_reranker["weight"] == 0.0 and trust_reranker["dev_ndcg@10"] == 1.0
    # min-max: reranker a=1,b=.5,c=0; first stage a=0,b=.5,c=1 -> a wins below weight 0.5; at 0.5 all three
    # tie and the fusion's tie-break (rank in the first run = the reranker's) keeps a first.
    by_weight = trust_reranker["dev_ndcg@10_by_weight"]
    assert [w for w, v in by_weight.items() if v == 1.0] == ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    trust_first_stage = tune_interpolation(bad, {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, qrels)
    assert trust_first_stage["weight"] == 0.6  # the smallest weight at which the first stage takes over
    # a reranker that hurts at any share: only the first stage's own order (weight 1) keeps the relevant doc first
    nearly_tied = {"q": {"a": 1.0, "b": 0.99, "c": 0.0}}
    hurts = tune_interpolation({"q": {"b": 1.0, "c": 0.5, "a": 0.0}}, nearly_tied, qrels)
    assert hurts["weight"] == 1.0 and hurts["dev_ndcg@10"] == 1.0 and hurts["dev_ndcg@10_by_weight"]["0.9"] < 1.0


def _mlflow_run(uri: str, project: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name(project).experiment_id])
    return client, run


def test_training_run_is_tracked_in_mlflow_with_best_and_latest(toy_data, tiny_bert, tmp_path, monkeypatch):
    from rankwise.train.reranker import train_reranker

    monkeypatch.chdir(tmp_path)  # the default store is ./mlruns; this test gives its own URI
    uri = (tmp_path / "mlruns").as_uri()
    tracking = {"backend": "mlflow", "uri": uri, "project": "toy"}
    config = _config(toy_data, tiny_bert, tmp_path / "out", epochs=2, tune_interpolation=False, tracking=tracking)
    metrics = train_reranker(config, show_progress=False)

    client, run = _mlflow_run(uri, "toy")
    assert run.info.status == "FINISHED" and run.info.run_name == "reranker/out"
    assert run.data.params["kind"] == "reranker" and run.data.params["loss"] == "bce"
    assert run.data.params["negative_window"] == "[1, 10]" and run.data.params["tracking.backend"] == "mlflow"
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    losses = client.get_metric_history(run.info.run_id, "loss")  # every logging step, at its step
    assert [(m.step, m.value) for m in losses] == [(row["step"], row["loss"]) for row in log if "loss" in row]
    assert len(losses) >= 2
    dev = client.get_metric_history(run.info.run_id, "eval_dev_ndcg_at_10")
    assert [(m.step, m.value) for m in dev] == _dev_log(tmp_path / "out") and len(dev) >= 2
    assert max(m.value for m in dev) == pytest.approx(metrics["best_dev_ndcg@10"])
    assert run.data.metrics["best_dev_ndcg_at_10"] == pytest.approx(metrics["best_dev_ndcg@10"])  # final figures
    assert run.data.metrics["examples"] == metrics["examples"]
    assert run.data.tags["rankwise.best"] == run.data.tags["rankwise.latest"] == "model"  # load_best: one model
    assert run.data.tags["rankwise.best_checkpoint"] == metrics["best_checkpoint"]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/model.safetensors" in logged
    stored = Path(client.download_artifacts(run.info.run_id, "model/model.safetensors", str(tmp_path / "dl")))
    assert stored.read_bytes() == (tmp_path / "out" / "model" / "model.safetensors").read_bytes()


def test_sample_ratio_and_max_triples_pick_the_same_pairs_every_time(toy_data, tmp_path):
    from rankwise.train.reranker import _prepare

    def picked(**settings):
        data = _prepare(_config(toy_data, tmp_path, tmp_path / "out", **settings))
        return sorted((ex.query_id, ex.positive_id) for ex in data["examples"]), data["train_query_count"]

    everything, queries = picked()
    assert len(everything) == queries == 22  # 30 judged queries, 8 held out for dev, one positive each
    capped, count = picked(max_triples=5)
    assert len(capped) == count == 5 and set(capped) <= set(everything)
    half, _ = picked(sample_ratio=0.5)
    assert half == picked(sample_ratio=0.5)[0] and 5 <= len(half) <= 17 and set(half) <= set(everything)
    assert half != picked(sample_ratio=0.5, seed=4)[0]  # the seed decides which pairs
    three, _ = picked(sample_ratio=0.5, max_triples=3)
    assert len(three) == 3 and set(three) <= set(half)  # the same draws, stopped after three kept
