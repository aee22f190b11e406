"""The RankRAG study: the sweep's table and resumption, and its MT-RAG abstention column (a model answers
UNANSWERABLE and ANSWERABLE generation tasks of one domain; real MT-RAG, tiny random Llama)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rankwise.config.rankrag_blend import from_mapping
from rankwise.rankrag.study_eval import Evaluator
from rankwise.rankrag.sweep import SweepEval


def test_the_study_reports_abstention_on_unanswerable_and_answerable_tasks(
    tiny_lm_dir: Path, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rankwise.rankrag.study_eval as study_eval
    from rankwise.rankrag.report import markdown_table

    monkeypatch.setenv("RANKWISE_DATA", str(data_root))
    settings = SweepEval(
        scifact=str(data_root / "scifact"), scifact_queries=2, depth=3, hotpotqa=None, max_new_tokens=2,
        mtrag_domain="govt", mtrag_per_label=2,
    )  # fmt: skip
    blend = from_mapping({"tokenizer": str(tiny_lm_dir), "scifact": {"path": str(data_root / "scifact")}})
    evaluator = Evaluator(settings, blend, tmp_path, dtype="float32", threads=1, show_progress=False)
    parts = evaluator.evaluate(str(tiny_lm_dir), tmp_path / "eval", no_rerank=False)
    mtrag = parts["mtrag"]
    assert mtrag["tasks"] == 4 and mtrag["domain"] == "govt"
    assert all(0 <= mtrag[key] <= 1 for key in ("abstained_unanswerable", "abstained_answerable"))
    row = {"name": "tiny", "fraction": None, "steps": 0, "train_seconds": None, **parts}
    results: dict[str, Any] = {"models": [row], "bm25": {}, "config": {"eval": settings.model_dump()}}
    table = markdown_table(results)
    rates = f"{mtrag['abstained_unanswerable']:.2f} / {mtrag['abstained_answerable']:.2f}"
    assert "MT-RAG abstains" in table and f"| {rates} |" in table and not mtrag["domain_in_blend"]
    trained_on_it = from_mapping({"tokenizer": str(tiny_lm_dir), "mtrag": {"domains": ["govt"]}})
    flagged = Evaluator(settings, trained_on_it, tmp_path, dtype="float32", threads=1, show_progress=False)
    assert flagged.evaluate(str(tiny_lm_dir), tmp_path / "eval", no_rerank=False)["mtrag"]["domain_in_blend"]

    def not_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished MT-RAG run was run again")

    monkeypatch.setattr(study_eval, "run_rag", not_again)
    again = Evaluator(settings, blend, tmp_path, dtype="float32", threads=1, show_progress=False)
    assert again.evaluate(str(tiny_lm_dir), tmp_path / "eval", no_rerank=False)["mtrag"] == mtrag


def test_sweep_writes_table_and_plot_and_skips_finished_work(
    tiny_lm_dir: Path, data_root: Path, tiny_eval: str, tmp_path: Path
) -> None:
    from rankwise.rankrag.sweep import load_sweep_config, run_sweep

    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"""output_dir: {tmp_path / "sweep"}
fractions: [0.0, 1.0]
train: {{model: {tiny_lm_dir}, max_steps: 1, batch_size: 2, dtype: float32, lora: {{r: 2, alpha: 4}}, threads: 1}}
blend:
  size: 6
  tokenizer: {tiny_lm_dir}
  hotpotqa: {{path: {data_root}/hotpotqa-train100/hotpotqa_train.json, heldout: 50, cap: 6}}
{tiny_eval}  no_rerank: [1.0]
"""
    )
    settings = load_sweep_config(config)
    results = run_sweep(settings, show_progress=False)
    out = tmp_path / "sweep"
    names = [m["name"] for m in results["models"]]
    assert names == ["zero-shot", "fraction-0", "fraction-1"]
    assert all(0 <= m["ranking"]["nDCG@10"] <= 1 for m in results["models"])
    assert "hotpotqa_no_rerank" in results["models"][2] and "hotpotqa_no_rerank" not in results["models"][1]
    assert results["models"][1]["steps"] == 1 and results["hotpotqa_heldout"]["questions"] == 2
    blend0 = [json.loads(x) for x in (out / "fraction-0" / "train" / "blend.jsonl").read_text().splitlines()]
    blend1 = [json.loads(x) for x in (out / "fraction-1" / "train" / "blend.jsonl").read_text().splitlines()]
    assert not any(r["task"] in ("ranking", "rag_ranking") for r in blend0)
    assert all(r["task"] in ("ranking", "rag_ranking") for r in blend1)
    table = (out / "sweep.md").read_text()
    assert "| fraction-1 | 1 | 1 | 6 / 6 |" in table and "BM25 alone" in table
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cached = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name in ("ranking.json", "metrics.json")}
    assert len(cached) >= 8
    again = run_sweep(settings, show_progress=False)  # everything is done: nothing is retrained or re-evaluated
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    assert [m["ranking"] for m in again["models"]] == [m["ranking"] for m in results["models"]]
