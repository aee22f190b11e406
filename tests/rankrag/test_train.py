"""RankRAG training, the one-model preset and the sweep, on a tiny Llama built from a config (no download).

The tokenizer is the bundled SmolLM2 one (its chat template is what the real model trains and scores with).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from rankwise.config.rankrag_train import RankRAGTrainConfig, load_train_config
from rankwise.errors import RankwiseError
from rankwise.rankrag.train import PRESET_FILE, train_rankrag
from rankwise.rerank.llm import ranking_messages


@pytest.fixture(scope="session")
def tiny_blend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ranking examples (the reranker's exact messages) and QA examples, in the blend file format."""
    path = tmp_path_factory.mktemp("blend") / "blend.jsonl"
    rows = []
    for i in range(8):
        rows.append(
            {
                "id": f"rank-{i}",
                "task": "ranking",
                "prompt": ranking_messages(f"what is item {i}", f"Item {i} is a thing number {i}."),
                "completion": [{"role": "assistant", "content": "True" if i % 2 else "False"}],
            }
        )
        rows.append(
            {
                "id": f"qa-{i}",
                "task": "context_qa",
                "prompt": [{"role": "system", "content": "Answer."}, {"role": "user", "content": f"Capital {i}?"}],
                "completion": [{"role": "assistant", "content": f"City {i} [1]"}],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config_for(model: Path, blend: Path, out: Path, **overrides: Any) -> RankRAGTrainConfig:
    settings: dict[str, Any] = dict(
        output_dir=str(out),
        model=str(model),
        blend_path=str(blend),
        max_steps=2,
        batch_size=4,
        learning_rate=5e-2,
        warmup_ratio=0.0,
        dtype="float32",
        save_steps=2,
        logging_steps=1,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        seed=0,
    )
    settings.update(overrides)
    return RankRAGTrainConfig(**settings)


class Recorder(TrainerCallback):
    """Keeps the parameters at the start and end of training, and the first batch the trainer sees."""

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}
        self.batch: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.start = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.batch = next(iter(kwargs["train_dataloader"]))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.end = {n: p.detach().clone() for n, p in model.named_parameters()}


class StopAt(TrainerCallback):
    """Simulates a kill after ``step`` (the checkpoint of that step is already on disk)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step > self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def trained(tiny_lm_dir: Path, tiny_blend: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    recorder = Recorder()
    out = tmp_path_factory.mktemp("rankrag-run")
    metrics = train_rankrag(config_for(tiny_lm_dir, tiny_blend, out), show_progress=False, callbacks=[recorder])
    return {"metrics": metrics, "recorder": recorder, "out": out}


def test_training_changes_the_adapter_and_leaves_the_base_untouched(trained: dict[str, Any]) -> None:
    start, end = trained["recorder"].start, trained["recorder"].end
    lora = [n for n in start if "lora_" in n]
    base = [n for n in start if "lora_" not in n]
    assert lora and base
    assert all(not torch.equal(start[n], end[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(start[n], end[n]) for n in base)
    assert trained["metrics"]["trainable_parameters"] == sum(start[n].numel() for n in lora)
    assert trained["metrics"]["steps"] == 2
    assert trained["metrics"]["examples_trained"] == trained["metrics"]["examples"]  # every example fits
    log = [json.loads(line) for line in (trained["out"] / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log if "loss" in entry] == [1, 2]
    # the answer-only loss logs what trl's does: answer-token accuracy and entropy, and the tokens seen so far
    steps = [entry for entry in log if "loss" in entry]
    assert all(0.0 <= entry["mean_token_accuracy"] <= 1.0 and entry["entropy"] > 0 for entry in steps)
    assert 0 < steps[0]["num_tokens"] < steps[1]["num_tokens"]


def test_loss_is_on_the_completion_tokens_only(trained: dict[str, Any], tiny_lm_dir: Path, tiny_blend: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    rows = [json.loads(line) for line in tiny_blend.read_text().splitlines()]
    by_prompt = {
        tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True): r for r in rows
    }
    batch = trained["recorder"].batch
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        kept = labels != -100
        first = int(kept.nonzero()[0])
        prompt = tokenizer.decode(ids[:first])
        row = by_prompt[prompt]  # the masked part is exactly the prompt as scored (chat template, generation prompt)
        completion = tokenizer.decode(labels[kept])
        assert completion == row["completion"][0]["content"] + "<|im_end|>\n"


def test_resume_after_a_kill_continues_from_the_checkpoint(tiny_lm_dir: Path, tiny_blend: Path, tmp_path: Path) -> None:
    config = config_for(tiny_lm_dir, tiny_blend, tmp_path / "run", max_steps=4, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train_rankrag(config, show_progress=False, callbacks=[StopAt(2)])
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "run" / "model").exists()
    metrics = train_rankrag(config, show_progress=False)
    assert metrics["steps"] == 4
    assert metrics["resumed_from"].endswith("checkpoint-2")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e][-2:] == [3, 4]
    again = train_rankrag(config, show_progress=False)  # finished: nothing is redone
    assert again["already_done"] and again["steps"] == 4
    with pytest.raises(Exception, match="different settings"):
        train_rankrag(config_for(tiny_lm_dir, tiny_blend, tmp_path / "run", max_steps=5), show_progress=False)


def test_merged_checkpoint_scores_like_the_adapter_model(trained: dict[str, Any], tiny_lm_dir: Path) -> None:
    from peft import PeftModel

    from rankwise.config.models import load_causal_lm
    from rankwise.rerank.llm import LLMReranker

    pairs = [("what is item 3", "Item 3 is a thing number 3."), ("what is item 4", "Something else entirely.")]
    merged, tokenizer = load_causal_lm(str(trained["out"] / "model"))
    assert not hasattr(merged, "peft_config")
    base, _ = load_causal_lm(str(tiny_lm_dir))
    before = LLMReranker(base, tokenizer, show_progress=False).score(pairs)
    adapter = PeftModel.from_pretrained(base, str(trained["out"] / "adapter")).eval()  # unmerged LoRA
    with_adapter = LLMReranker(adapter, tokenizer, show_progress=False).score(pairs)
    via_loader, _ = load_causal_lm(str(trained["out"] / "adapter"))  # the loader merges an adapter directory
    scores = LLMReranker(merged, tokenizer, show_progress=False).score(pairs)
    assert scores == pytest.approx(with_adapter, abs=1e-5)
    assert LLMReranker(via_loader, tokenizer, show_progress=False).score(pairs) == pytest.approx(scores, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(scores, before, strict=True)) > 1e-4  # training moved the scores


def test_every_checkpoint_carries_the_prompt_settings_of_the_model(trained: dict[str, Any]) -> None:
    saved = (trained["out"] / "model" / "rankrag.json").read_text()
    assert (trained["out"] / "checkpoints" / "checkpoint-2" / "rankrag.json").read_text() == saved


def test_preset_shares_one_model_between_reranker_and_generator(trained: dict[str, Any]) -> None:
    from rankwise.rankrag.preset import load_rankrag
    from rankwise.types import Document, Query

    parts = load_rankrag(str(trained["out"] / "model"), dtype="float32", max_new_tokens=4, show_progress=False)
    model, tokenizer = parts.generator.model_and_tokenizer()
    assert parts.reranker.model is model is parts.model
    assert parts.reranker.tokenizer is tokenizer
    corpus = {"a": Document("a", "A", "Item 1 is a thing."), "b": Document("b", "B", "Other text.")}
    run = parts.reranker.rerank({"q": Query("q", "what is item 1")}, {"q": {"a": 1.0, "b": 2.0}}, corpus, k=2)
    assert set(run["q"]) == {"a", "b"}
    answer = parts.generator.generate("what is item 1", [corpus["a"]])
    assert isinstance(answer.text, str)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from rankwise.errors import DataError

    path = tmp_path / "train.yaml"
    path.write_text("output_dir: x\nblend_path: b.jsonl\nmax_stepz: 3\n")
    with pytest.raises(DataError, match=r"line 3.*max_stepz"):
        load_train_config(path)
    path.write_text("output_dir: x\n")
    with pytest.raises(DataError, match="exactly one of blend_path"):
        load_train_config(path)


def test_trainer_runs_under_torchrun(tiny_lm_dir: Path, tiny_blend: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    config = tmp_path / "train.yaml"
    config.write_text(
        f"output_dir: {tmp_path / 'ddp'}\nmodel: {tiny_lm_dir}\nblend_path: {tiny_blend}\nmax_steps: 1\n"
        "batch_size: 2\ndtype: float32\nlora: {r: 2, alpha: 4}\nthreads: 1\ndevice: cpu\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [torchrun, "--nproc-per-node", "1", "-m", "rankwise", "rankrag", "train", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["steps"] == 1 and (tmp_path / "ddp" / "model" / "model.safetensors").is_file()


def test_ask_with_the_rankrag_preset(trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rankwise.cli import main

    data = tmp_path / "toy"
    data.mkdir()
    docs = [("d1", "Cats", "Cats purr and sleep all day."), ("d2", "Dogs", "Dogs bark."), ("d3", "Fish", "Fish swim.")]
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs)
    )
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "why do cats purr"}) + "\n")
    assert main(["index", str(data), "--out", str(tmp_path / "idx")]) == 0
    model = str(trained["out"] / "model")
    ask = ["ask", "why do cats purr", "--index", str(tmp_path / "idx"), "--corpus", str(data), "--rankrag", model]
    capsys.readouterr()
    assert main([*ask, "--k", "2", "--max-new-tokens", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["sources"]) == 2 and "rerank_s" in payload["latency_s"]  # the model reranked, then answered
    assert main([*ask, "--reranker", "llm"]) == 2  # one model plays both roles: a second reranker is refused

    # rankwise serve takes the same --rankrag flag (through the same ask_parts): one model reranks and answers
    from rankwise.serve.parts import from_flags
    from rankwise.types import Query

    served = from_flags([tmp_path / "idx"], data, rankrag=Path(model), k=2, max_new_tokens=3, log=lambda _: None)
    assert served.info["stages"] == ["retrieve", "rerank", "generate"]
    assert served.pipeline.reranker.model is served.pipeline.generator.model_and_tokenizer()[0]  # one copy
    assert len(served.pipeline.ask(Query("q", "why do cats purr")).passages) == 2


def test_experiment_config_rankrag_preset_loads_one_model_for_both_stages(
    trained: dict[str, Any], hotpotqa_file: Path, tmp_path: Path
) -> None:
    from rankwise.config.experiment import ConfigError, load_config
    from rankwise.data import read_run
    from rankwise.experiment import run_experiment
    from rankwise.rankrag.preset import shared_model

    model = trained["out"] / "model"
    config = tmp_path / "rankrag.yaml"
    config.write_text(
        f"""name: rankrag
data: {{max_queries: 2}}
retrieve: {{bm25: {{k: 10}}}}
rerank: {{kind: rankrag, model: {model}, top_n: 4, dtype: float32}}
generate: {{kind: rankrag, model: {model}, top_k: 2, max_new_tokens: 2, dtype: float32}}
"""
    )
    shared_model.cache_clear()
    [out] = run_experiment(load_config(config), [str(hotpotqa_file)], tmp_path / "out", show_progress=False, log=str)
    assert shared_model.cache_info().misses == 1  # the reranker and the generator share one loaded model
    reranked = read_run(out / "runs" / "rerank.trec")
    assert len(reranked) == 2 and all(len(docs) == 4 for docs in reranked.values())
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert "rerank" in metrics["stages"] and metrics["stages"]["generate"]["questions"] == 2
    with pytest.raises(ConfigError, match="one model: give both the same model, dtype and device"):
        load_config(config, ["generate.model=smollm2"])


def test_examples_cut_before_their_answer_are_counted(tiny_lm_dir: Path, tiny_blend: Path, tmp_path: Path) -> None:
    metrics = train_rankrag(config_for(tiny_lm_dir, tiny_blend, tmp_path, max_length=48, max_steps=1), False)
    assert 0 < metrics["examples_trained"] < metrics["examples"]  # the longer prompts lost their answers


def test_eval_scores_a_trained_model_and_its_checkpoint_alike(
    trained: dict[str, Any], tiny_lm_dir: Path, data_root: Path, tiny_eval: str, tmp_path: Path
) -> None:
    from rankwise.errors import RankwiseError
    from rankwise.rankrag.sweep import load_sweep_config, run_eval

    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"""output_dir: {tmp_path / "unused"}
train: {{model: {tiny_lm_dir}, dtype: float32, threads: 1}}
blend: {{tokenizer: {tiny_lm_dir}, hotpotqa: {{path: {data_root}/hotpotqa-train100/hotpotqa_train.json, heldout: 50}}}}
{tiny_eval}"""
    )
    settings = load_sweep_config(config)
    checkpoint = trained["out"] / "checkpoints" / "checkpoint-2"  # the last step's adapter, as the trainer saved it
    models = [str(trained["out"] / "model"), str(checkpoint)]
    out = tmp_path / "eval"
    results = run_eval(settings, models, out, show_progress=False, isolate=False)
    rows = results["models"]
    assert [m["name"] for m in rows] == ["model", "checkpoint-2"] and [m["steps"] for m in rows] == [2, 2]
    assert rows[0]["ranking"]["nDCG@10"] == pytest.approx(rows[1]["ranking"]["nDCG@10"], abs=1e-6)
    assert rows[0]["hotpotqa"]["questions"] == 2 and results["bm25"]["nDCG@10"] > 0
    paired = rows[0]["ranking"]["vs_bm25"]  # query by query against BM25's own order
    assert paired["queries"] == 2 and paired["wins"] + paired["ties"] + paired["losses"] == 2
    assert paired["delta"] == pytest.approx(rows[0]["ranking"]["nDCG@10"] - results["bm25"]["nDCG@10"], abs=1e-9)
    assert 0 < paired["p_permutation"] <= 1
    table = (out / "eval.md").read_text()
    assert "| checkpoint-2 | – | 2 |" in table and "BM25 alone" in table and f"{paired['delta']:+.4f} (p " in table
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cached = {p: p.stat().st_mtime_ns for p in out.rglob("ranking.json")}
    run_eval(settings, models, out, show_progress=False, isolate=False)  # cached: nothing is scored again
    assert len(cached) == 2 and {p: p.stat().st_mtime_ns for p in cached} == cached
    with pytest.raises(RankwiseError, match="no such directory"):
        run_eval(settings, [str(tmp_path / "missing")], out, show_progress=False, isolate=False)
    # a result from before the paired comparison gets it from its saved run, without scoring again
    ranking_json = out / "model" / "ranking.json"
    saved = json.loads(ranking_json.read_text())
    ranking_json.write_text(json.dumps({k: v for k, v in saved.items() if k != "vs_bm25"}))
    assert run_eval(settings, models[:1], out, show_progress=False, isolate=False)["models"][0]["ranking"] == saved
    # BM25's cached figures belong to the query count they were measured on
    more = settings.model_copy(update={"eval": settings.eval.model_copy(update={"scifact_queries": 3})})
    again = run_eval(more, models[:1], out, show_progress=False, isolate=False)
    assert again["bm25"]["settings"] == {"queries": 3, "depth": 3} and again["models"][0]["ranking"]["pairs"] == 9


def test_lora_on_the_last_layers_only(tiny_lm_dir: Path, tiny_blend: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    config = config_for(tiny_lm_dir, tiny_blend, tmp_path / "run", max_steps=1, lora={"r": 4, "alpha": 8, "layers": 1})
    metrics = train_rankrag(config, show_progress=False, callbacks=[recorder])
    start, end = recorder.start, recorder.end
    lora = [n for n in start if "lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)  # the tiny model has layers 0 and 1
    assert {n.split(".layers.1.")[1].split(".")[1] for n in lora} >= {"q_proj", "down_proj"}  # all-linear spelled out
    assert all(not torch.equal(start[n], end[n]) for n in lora if "lora_B" in n)
    assert metrics["trainable_parameters"] == sum(start[n].numel() for n in lora)
    too_many = config_for(tiny_lm_dir, tiny_blend, tmp_path / "other", lora={"layers": 3})
    with pytest.raises(RankwiseError, match=r"lora\.layers: 3 is more than the model's 2 layers"):
        train_rankrag(too_many, show_progress=False)


def test_training_run_is_tracked_with_the_model_marked_best_and_latest(
    tiny_lm_dir: Path, tiny_blend: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    config = config_for(tiny_lm_dir, tiny_blend, tmp_path / "run", tracking={"backend": "mlflow", "uri": uri})
    metrics = train_rankrag(config, show_progress=False)
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("rankwise").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["kind"] == "rankrag"
    assert run.data.params["lora.r"] == "4" and run.data.params["max_steps"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    assert run.data.metrics["last_loss"] == pytest.approx(metrics["last_loss"])
    assert run.data.tags["rankwise.best"] == run.data.tags["rankwise.latest"] == "model"  # no dev metric: the final
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.safetensors", f"model/{PRESET_FILE}"} <= logged


def test_device_cpu_keeps_the_base_model_off_the_gpu(tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A causal LM goes to the GPU when no device is named; `device: cpu` must keep the training base on the CPU
    # ("meta" stands in for the GPU this test has not got).
    import rankwise.config.models as models
    from rankwise.rankrag.train import load_base

    monkeypatch.setattr(models, "default_device", lambda: "meta")
    config = RankRAGTrainConfig(output_dir="o", model=str(tiny_lm_dir), blend_path="b.jsonl", device="cpu")
    model, _ = load_base(str(tiny_lm_dir), config.model_copy(update={"dtype": "float32"}))
    assert next(model.parameters()).device.type == "cpu"
