"""Evaluation of one RankRAG model for the ranking-fraction study (:mod:`rankwise.rankrag.sweep`).

Every measurement is cached in its own file under the model's eval directory (``ranking.json``; the HotpotQA
runs are experiments, ``hotpotqa/hotpotqa-heldout/`` and ``hotpotqa-no-rerank/hotpotqa-heldout/``, with their
``metrics.json``); the model is loaded only when one is missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rankwise.config.experiment import dump_config
from rankwise.config.sections import BM25Config, RankRAGGenerateConfig, RankRAGRerankConfig
from rankwise.config.yaml_config import expand_setting
from rankwise.data import load_dataset, read_run, write_run
from rankwise.data.files import atomic_write_text
from rankwise.data.hotpotqa import hotpotqa_split, load_hotpotqa
from rankwise.errors import RankwiseError
from rankwise.evaluate.retrieval import evaluate, evaluate_per_query
from rankwise.evaluate.stats import compare_paired
from rankwise.experiment.rag import hotpotqa_experiment, mtrag_experiment, run_rag
from rankwise.experiment.rag_scores import hotpotqa_summary, mtrag_summary
from rankwise.rankrag.preset import load_rankrag
from rankwise.retrieve.bm25 import BM25Retriever

RANK_METRICS = ["nDCG@10", "RR@10"]
QA_KEYS = ("em", "f1", "sp_paragraph_f1")


class Evaluator:
    """SciFact test reranking + held-out HotpotQA answering, with data loaded once per sweep."""

    def __init__(
        self,
        settings: Any,
        blend: Any,
        out: Path,
        dtype: str = "auto",
        threads: int | None = None,
        show_progress: bool = True,
    ) -> None:
        self.settings, self.blend, self.out = settings, blend, out
        self.dtype, self.threads, self.show_progress = dtype, threads, show_progress
        self.scifact = expand_setting(out, "", "eval.scifact", settings.scifact)
        self.hotpotqa = expand_setting(out, "", "eval.hotpotqa", settings.hotpotqa) if settings.hotpotqa else None
        self._scifact_data: tuple[Any, Any, Any] | None = None
        self._heldout: dict[str, Any] | None = None

    # ---- data -------------------------------------------------------------------------------------------------
    def scifact_data(self) -> tuple[Any, Any, Any]:
        """``(dataset, queries, bm25 run)``: the first N judged test queries and BM25's top-``depth``."""
        if self._scifact_data is None:
            dataset = load_dataset(self.scifact, split="test")
            queries = dict(list(dataset.judged_queries().items())[: self.settings.scifact_queries])
            bm25 = BM25Retriever(show_progress=False)
            bm25.index(dataset.corpus)
            self._scifact_data = (dataset, queries, bm25.search(queries, k=self.settings.depth))
        return self._scifact_data

    def _scifact_settings(self) -> dict[str, Any]:
        return {"queries": self.settings.scifact_queries, "depth": self.settings.depth}

    def bm25_metrics(self) -> dict[str, Any]:
        """BM25 alone on the evaluated queries (cached with the query count and depth it was measured at)."""
        cached = self.out / "bm25-scifact.json"
        if cached.is_file():
            saved = json.loads(cached.read_text(encoding="utf-8"))
            if saved.get("settings") == self._scifact_settings():
                return saved

        dataset, _, run = self.scifact_data()
        metrics = {**evaluate(run, dataset.qrels, RANK_METRICS), "settings": self._scifact_settings()}
        atomic_write_text(cached, json.dumps(metrics, indent=2) + "\n")
        return metrics

    def versus_bm25(self, reranked: dict[str, dict[str, float]]) -> dict[str, Any] | None:
        """The reranked run against BM25's order, query by query on nDCG@10: the mean difference, wins/ties/losses
        and two-sided paired p-values (t-test and randomisation test, :mod:`rankwise.evaluate.stats`); ``None``
        for a single query, which no paired test can judge."""
        dataset, _, run = self.scifact_data()
        [base] = evaluate_per_query(run, dataset.qrels, ["nDCG@10"]).values()
        [ours] = evaluate_per_query(reranked, dataset.qrels, ["nDCG@10"]).values()
        if len(base.keys() & ours.keys()) < 2:
            return None
        paired = compare_paired(base, ours)
        return {
            "metric": "nDCG@10",
            "queries": paired.queries,
            "delta": paired.delta,
            "wins": paired.wins,
            "ties": paired.ties,
            "losses": paired.losses,
            "p_t": paired.p_t,
            "p_permutation": paired.p_permutation,
        }

    def heldout_summary(self) -> dict[str, Any]:
        if self.hotpotqa is None:
            return {}
        info = self._heldout_file()
        return {"file": str(info["file"]), "questions": len(info["ids"]), "seed": info["seed"], "ids": info["ids"]}

    def _heldout_file(self) -> dict[str, Any]:
        """The held-out HotpotQA questions (BLEND's split, the blend's seed and size) as their own JSON file."""
        if self._heldout is None:
            source = self.blend.hotpotqa
            heldout, seed = (source.heldout, source.split_seed) if source is not None else (50, 0)
            examples = load_hotpotqa(self.hotpotqa)
            _, heldout_ids = hotpotqa_split(examples, heldout=heldout, seed=seed)
            ids = list(heldout_ids)[: self.settings.hotpotqa_limit]
            if not ids:
                raise RankwiseError("the HotpotQA split holds out no question to evaluate on")
            wanted = set(ids)
            raw = json.loads(Path(self.hotpotqa).read_text(encoding="utf-8"))
            subset = [item for item in raw if item.get("_id") in wanted]
            target = self.out / "hotpotqa-heldout.json"
            atomic_write_text(target, json.dumps(subset, ensure_ascii=False) + "\n")
            self._heldout = {"file": target, "ids": [item["_id"] for item in subset], "seed": seed}
        return self._heldout

    # ---- one model --------------------------------------------------------------------------------------------
    def evaluate(self, model: str, eval_dir: Path, no_rerank: bool) -> dict[str, Any]:
        """Ranking and answering metrics of ``model`` (cached per measurement under ``eval_dir``)."""
        eval_dir.mkdir(parents=True, exist_ok=True)
        parts: dict[str, Any] = {}
        loaded: list[Any] = []

        def shared() -> Any:
            if not loaded:
                loaded.append(
                    load_rankrag(
                        model,
                        dtype=self.dtype,
                        threads=self.threads,
                        template=self.blend.qa_template,
                        max_passage_words=self.blend.max_passage_words,
                        max_new_tokens=self.settings.max_new_tokens,
                        batch_size=self.settings.batch_size,
                        max_passage_tokens=self.blend.max_passage_tokens,
                        rerank_batch_size=self.settings.rerank_batch_size,
                        ranking_template=self.blend.ranking_template,
                        ranking_system_prompt=self.blend.ranking_system_prompt,
                        show_progress=self.show_progress,
                    )
                )
            return loaded[0]

        parts["ranking"] = self._ranking(eval_dir / "ranking.json", model, shared)
        if self.hotpotqa is not None:
            parts["hotpotqa"] = self._hotpotqa(eval_dir / "hotpotqa", model, rerank=True)
            if no_rerank:
                parts["hotpotqa_no_rerank"] = self._hotpotqa(eval_dir / "hotpotqa-no-rerank", model, False)
        if self.settings.mtrag_domain is not None:
            parts["mtrag"] = self._mtrag(eval_dir / "mtrag", model)
        return parts

    def _stages(self, model: str, rerank: bool) -> dict[str, Any]:
        """BM25, then (``rerank``) the model's P(True), then the model answering: the blend's prompt settings."""
        blend, settings = self.blend, self.settings
        common = {"model": model, "dtype": self.dtype, "threads": self.threads}
        stages: dict[str, Any] = {"retrieve": {"bm25": BM25Config()}}
        stages["generate"] = RankRAGGenerateConfig(
            **common, top_k=settings.k, template=blend.qa_template, max_passage_words=blend.max_passage_words,
            max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size, checkpoint_every=10,
        )  # fmt: skip
        if rerank:
            stages["rerank"] = RankRAGRerankConfig(
                **common, batch_size=settings.rerank_batch_size, max_passage_tokens=blend.max_passage_tokens,
                ranking_template=blend.ranking_template, ranking_system_prompt=blend.ranking_system_prompt,
            )  # fmt: skip
        return stages

    def _mtrag(self, out_dir: Path, model: str) -> dict[str, Any]:
        """Abstention on MT-RAG: the first ``mtrag_per_label`` UNANSWERABLE and ANSWERABLE generation tasks of one
        domain (pooled corpus), reranked and answered by ``model``; a finished folder of the same config is read
        back. A blend whose MT-RAG source lists that domain trains on those tasks: then this measures fitting,
        not generalisation."""
        from rankwise.experiment.datasets import data_root

        root = data_root()
        if root is None or not (root / "mtrag").is_dir():
            raise RankwiseError("eval.mtrag_domain: MT-RAG is read from $RANKWISE_DATA/mtrag; set RANKWISE_DATA")
        labels = ["ANSWERABLE", "UNANSWERABLE"]
        config, sources = mtrag_experiment(
            root / "mtrag", out_dir.name, self._stages(model, rerank=True), domains=[self.settings.mtrag_domain],
            answerability=labels, per_label_limit=self.settings.mtrag_per_label,
        )  # fmt: skip
        folder = out_dir / sources[0].name
        if _finished(folder, config):
            summary = mtrag_summary([folder])
        else:
            summary, _ = run_rag("mtrag", config, sources, out_dir.parent, log=_quiet, show_progress=self.show_progress)
        generation = summary.get("generation", {})
        result = {f"abstained_{label.lower()}": generation.get(f"abstention_rate_{label}") for label in labels}
        result.update(tasks=summary["tasks"], domain=self.settings.mtrag_domain, f1=generation.get("f1"))
        source = self.blend.mtrag
        result["domain_in_blend"] = source is not None and (
            source.domains is None or self.settings.mtrag_domain in source.domains
        )  # then the blend trained on these very tasks: fitting, not generalisation
        return result

    def _ranking(self, path: Path, model: str, shared: Any) -> dict[str, Any]:
        settings = {
            "model": model,
            **self._scifact_settings(),
            "max_passage_tokens": self.blend.max_passage_tokens,
            "dtype": self.dtype,
        }
        trec = path.with_suffix(".trec")
        if path.is_file():
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("settings") == settings:
                if "vs_bm25" not in cached and trec.is_file():  # measured before the paired comparison existed
                    cached["vs_bm25"] = self.versus_bm25(read_run(trec))
                    atomic_write_text(path, json.dumps(cached, indent=2) + "\n")
                return cached

        dataset, queries, run = self.scifact_data()
        started = time.perf_counter()
        reranked = shared().reranker.rerank(queries, run, dataset.corpus, k=self.settings.depth)
        seconds = time.perf_counter() - started
        write_run(reranked, trec, tag="rankrag")
        result = {
            **evaluate(reranked, dataset.qrels, RANK_METRICS),
            "vs_bm25": self.versus_bm25(reranked),
            "pairs": sum(min(len(d), self.settings.depth) for d in run.values()),
            "seconds": round(seconds, 1),
            "settings": settings,
        }
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        return result

    def _hotpotqa(self, out_dir: Path, model: str, rerank: bool) -> dict[str, Any]:
        """HotpotQA (distractor setting) answered by ``model`` after it reranked BM25's order (or straight from
        BM25's order), run by the experiment runner into ``out_dir/<held-out file>/`` with the blend's prompt
        settings; a finished folder of the same config is read back without loading anything."""
        stages = self._stages(model, rerank)
        config, sources = hotpotqa_experiment(self._heldout_file()["file"], out_dir.name, stages)
        folder = out_dir / sources[0].name
        if _finished(folder, config):
            return _qa_summary(hotpotqa_summary(folder))
        summary, _ = run_rag("hotpotqa", config, sources, out_dir.parent, log=_quiet, show_progress=self.show_progress)
        return _qa_summary(summary)


def _finished(folder: Path, config: Any) -> bool:
    """Whether ``folder`` holds a finished run of exactly ``config`` (then it is read back, not run again)."""
    config_file = folder / "config.yaml"
    done = (folder / "metrics.json").is_file() and config_file.is_file()
    return done and config_file.read_text(encoding="utf-8") == dump_config(config)


def _quiet(_: str) -> None:
    return None


def _qa_summary(summary: dict[str, Any]) -> dict[str, Any]:
    qa = summary.get("qa", {})
    result = {key: qa.get(key) for key in QA_KEYS}
    result.update({f"retrieval_{k}": v for k, v in summary.get("retrieval", {}).items()})
    result["questions"] = summary.get("questions")
    latency = summary.get("latency_per_question_s", {})
    result["wall_s"] = round(latency.get("total_s", 0.0) * (summary.get("questions") or 0), 1)
    return result
