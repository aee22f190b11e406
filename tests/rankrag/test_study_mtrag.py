"""The study's MT-RAG abstention column: a model answers UNANSWERABLE and ANSWERABLE generation tasks of one domain
(real MT-RAG, tiny random Llama), the rates land in the results and the table, and a finished run is read back."""

from __future__ import annotations

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
