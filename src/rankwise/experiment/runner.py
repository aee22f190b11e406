"""``run_experiment(config, datasets)``: run the configured stages per data set and write one output folder each.

``<out_root>/<experiment>/<dataset>/`` holds

- ``config.yaml``       the resolved config (defaults filled in, overrides applied);
- ``queries.jsonl``     the search queries, when a ``rewrite`` stage rewrites them;
- ``runs/<stage>.trec`` one TREC run per ranking stage (each retriever by its name, ``fuse``, ``rerank``);
- ``answers.jsonl``     the generated answers with their citations, when generating (:mod:`.answers`);
- ``qrels.tsv``         the judgements of the evaluated queries (so compare/report need no data set);
- ``per_query.json``    ``{stage: {metric: {query id: value}}}`` for significance tests;
- ``metrics.json``      IR metrics and the cutoff sweep per ranking stage, QA/citation/abstention metrics,
  latency per stage (``timing`` in each stage, ``latency_s`` for all), counts;
- ``stages.json``       the ledger of completed stages and their content hashes (see :mod:`.cache`).

Indexes are cached under ``<out_root>/.indexes`` and trained models under ``<out_root>/.models``, keyed by
content, so experiments share them. Every file is written atomically; ``metrics.json`` is written last.

A run never writes into ``<dataset>/`` itself: it works in the staging folder ``<dataset>.partial/`` beside it
and, once ``metrics.json`` is complete there, swaps it in by renames (the old folder moves to
``<dataset>.partial/.replaced`` and is deleted after the swap). So a run that fails or is killed leaves the last
good output as it was, and ``<dataset>/`` only ever holds one finished run. A run resumes its staging folder (the
stages its ledger holds, the saved chunks of a half-done stage) and takes every stage whose key matches from the
last good output (hard links, not copies). A run killed between the two renames is put right by the next one.
Two data sets that would share an output folder (``-d A/sf -d B/sf``) are refused before any work.

``metrics.json`` is deterministic given the config and the data, except for ``latency_s`` and each stage's
``timing`` (seconds, whether an index was built or loaded, chunks resumed): a re-run that recomputes nothing
rewrites the same bytes, and a run killed mid-stage then restarted gives the same metrics.json up to those
(:func:`rankwise.experiment.outputs.stable_view` drops them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rankwise.config.experiment import ExperimentConfig, dump_config
from rankwise.data import write_qrels
from rankwise.data.files import atomic_write_text, write_json
from rankwise.errors import RankwiseError
from rankwise.evaluate.qa import answer_recall, parse_answer_recall
from rankwise.evaluate.retrieval import evaluate, evaluate_per_query
from rankwise.experiment.cache import CHUNKS, content_hash, qrels_digest, queries_digest
from rankwise.experiment.chain import Chain, Ledgered, Log
from rankwise.experiment.datasets import DatasetSource, candidate_sets, load_for_experiment, resolve_dataset
from rankwise.experiment.outputs import STAGING_SUFFIX
from rankwise.experiment.tracking import track
from rankwise.retrieve.store import corpus_fingerprint
from rankwise.types import Dataset, Document, Run, sort_run

METRICS_FILE = "metrics.json"
REPLACED = ".replaced"  # inside the staging folder: the previous output, for the moment of the swap


def run_experiment(
    config: ExperimentConfig,
    datasets: Sequence[str | DatasetSource] = (),
    out_root: str | Path = "outputs",
    show_progress: bool = True,
    log: Log = print,
) -> list[Path]:
    """Run ``config`` on each data set (``-d`` arguments or resolved sources; default: ``config.datasets``);
    return the output dirs."""
    names = list(datasets) or list(config.datasets)
    if not names:
        raise RankwiseError(f"experiment {config.name!r}: no data set given (-d NAME) and none in its config")
    sources = [n if isinstance(n, DatasetSource) else resolve_dataset(n) for n in names]  # fail before any work
    out_root = Path(out_root)
    _check_folders(sources, out_root / config.name)
    outputs = []
    for source in sources:
        out_dir = out_root / config.name / source.name
        log(f"[{config.name}] {source.name}: {source.path} -> {out_dir}")
        metrics = run_dataset(config, source, out_dir, out_root, show_progress=show_progress, log=log)

        track(config, metrics, out_dir)
        outputs.append(out_dir)
    return outputs


def _check_folders(sources: Sequence[DatasetSource], experiment_dir: Path) -> None:
    """Refuse data sets that would write the same output folder (the later one would overwrite the earlier)."""
    seen: dict[str, DatasetSource] = {}
    for source in sources:
        if source.name.endswith(STAGING_SUFFIX):
            raise RankwiseError(
                f"-d {source.path}: a data set folder named '*{STAGING_SUFFIX}' clashes with the staging folders of "
                f"unfinished runs; rename it (or link it under another name: ln -s {source.path} NEWNAME; -d NEWNAME)"
            )
        earlier = seen.setdefault(source.name.casefold(), source)
        if earlier is source:
            continue
        where = experiment_dir / source.name
        if earlier == source:
            raise RankwiseError(f"-d {source.path} is given twice (both would write {where})")
        raise RankwiseError(
            f"-d {earlier.path} and -d {source.path} would both write {where}: give each data set a folder name of "
            f"its own (e.g. ln -s {source.path} {source.name}-2; -d {source.name}-2), or run them with different --out"
        )


def run_dataset(
    config: ExperimentConfig,
    source: DatasetSource,
    out_dir: Path,
    out_root: Path,
    show_progress: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Run the stages on one data set in its staging folder, score them, and swap the finished output in."""
    started = time.perf_counter()
    dataset = load_for_experiment(source, config.data)
    if not dataset.answers and any(parse_answer_recall(name) for name in config.evaluate.metrics):
        _require_answers(dataset)  # before any stage runs
    for warning in dataset.warnings:
        log(f"  warning: {warning}")
    fingerprint = corpus_fingerprint(dataset.corpus)
    data_key = content_hash(fingerprint, queries_digest(dataset.queries))
    allowed = candidate_sets(source, config.data)  # each query's own candidates (HotpotQA distractor), or None
    if allowed is not None:
        data_key = content_hash(data_key, allowed)
    config_text = dump_config(config)
    config_key = content_hash(config_text, data_key, qrels_digest(dataset.qrels))
    if dataset.answers:  # open-domain QA: the gold answers score the runs
        config_key = content_hash(config_key, {qid: list(golds) for qid, golds in dataset.answers.items()})

    final_dir, out_dir = out_dir, _staging(out_dir)  # everything below writes into the staging folder
    atomic_write_text(out_dir / "config.yaml", config_text)
    write_qrels(dataset.qrels, out_dir / "qrels.tsv")
    done = Ledgered(out_dir, log, previous=final_dir)
    chain = Chain(config, dataset, done, out_root, fingerprint, data_key, allowed, show_progress, log)
    chain.rewrite(source)
    chain.retrieve()
    chain.rerank()
    info = {
        "name": source.name,
        "source": source.source,
        "path": source.path,
        "domain": source.domain,
        "split": config.data.split,
        "format": config.data.format,
        "title": dataset.name,
    }
    records = None
    if config.generate is not None:
        from rankwise.experiment import answers

        gold = answers.gold_for(dataset, info)
        records = chain.generate(gold)

    _remove_stale(out_dir, set(chain.runs), records is not None, config.rewrite is not None)
    metrics, per_query = evaluate_stages(config, dataset, chain.runs, done.timing)
    if records is not None:
        sentences = answers.numbers_sentences(config.generate)
        scored, per_query["generate"] = answers.qa_metrics(records, gold, dataset.corpus, sentences)
        metrics["generate"] = {
            "type": "generate",
            "answers": "answers.jsonl",
            "questions": len(records),
            "from": chain.last,
            **scored,
            "timing": dict(done.timing["generate"]),
        }
    result = {
        "experiment": config.name,
        "dataset": info,
        "config_key": config_key,
        "rankwise": chain.version,
        "counts": {**dataset.stats(), "corpus_fingerprint": fingerprint},
        "final_stage": chain.last,
        "stages": metrics,
        "latency_s": {name: entry.get("total_s") for name, entry in done.timing.items()},
        "warnings": list(dataset.warnings),
    }
    write_json(out_dir / "per_query.json", per_query)
    write_json(out_dir / METRICS_FILE, result)
    _publish(out_dir, final_dir)
    log(f"  done in {time.perf_counter() - started:.1f}s -> {final_dir / METRICS_FILE}")
    return result


def evaluate_stages(
    config: ExperimentConfig, dataset: Dataset, runs: dict[str, Run], timing: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """IR metrics, the nDCG@k / R@k sweep and per-query values of every ranking stage; ``AnswerRecall@k`` from
    the gold answers (open-domain QA, whose data has no judgements: its sweep is of AnswerRecall@k)."""
    answer_k = {name: k for name in config.evaluate.metrics if (k := parse_answer_recall(name)) is not None}
    names = [name for name in config.evaluate.metrics if name not in answer_k]
    judged = bool(dataset.qrels)
    families = ("nDCG", "R") if judged else ("AnswerRecall",)
    sweep_names = [f"{family}@{k}" for family in families for k in config.evaluate.sweep]
    missing = config.evaluate.missing
    metrics: dict[str, Any] = {}
    per_query: dict[str, Any] = {}
    for name, run in runs.items():
        values, per_query[name], swept = {}, {}, {}
        if judged and names:
            values = evaluate(run, dataset.qrels, names, missing=missing)  # judged queries a run lacks: see missing
            per_query[name] = evaluate_per_query(run, dataset.qrels, names, missing=missing)
        if judged:
            swept = evaluate(run, dataset.qrels, sweep_names, missing=missing)
        if answer_k or not judged:
            answer_names = answer_k if judged else {**answer_k, **{n: int(n.split("@")[1]) for n in sweep_names}}
            found = _answer_recall(run, dataset, answer_names)
            per_query[name].update({n: found[n] for n in answer_k})
            values.update({n: _mean(found[n]) for n in answer_k})
            swept.update({n: _mean(found[n]) for n in sweep_names if n in found})
        queries = len(run)
        info = dict(timing[name])
        total = info.get("total_s")
        if isinstance(total, int | float) and queries:
            info["ms_per_query"] = round(1000 * total / queries, 3)
        metrics[name] = {
            "type": "rerank" if name == "rerank" else "fuse" if name == "fuse" else "retrieve",
            "run": f"runs/{name}.trec",
            "queries": queries,
            "docs_per_query": round(sum(len(d) for d in run.values()) / max(queries, 1), 3),
            "metrics": values,
            "sweep": {family: {str(k): swept[f"{family}@{k}"] for k in config.evaluate.sweep} for family in families},
            "timing": info,
        }
    return metrics, per_query


def _answer_recall(run: Run, dataset: Dataset, cutoffs: dict[str, int]) -> dict[str, dict[str, float]]:
    """``{metric name: {query id: 0/1}}`` for each ``AnswerRecall@k``; a data set without answers is an error."""
    _require_answers(dataset)
    ranked = {qid: list(docs) for qid, docs in sort_run(run).items()}
    text = partial(_doc_text, dataset.corpus)
    return {name: dict(sorted(answer_recall(ranked, dataset.answers, k, text).items())) for name, k in cutoffs.items()}


def _require_answers(dataset: Dataset) -> None:
    if not dataset.answers:
        raise RankwiseError(
            f"{dataset.name}: AnswerRecall@k needs gold answers (-d open-qa:FILE), and a data set without "
            "judgements has nothing else to score"
        )


def _doc_text(corpus: dict[str, Document], doc_id: str) -> str:
    doc = corpus.get(doc_id)
    return doc.contents if doc is not None else ""


def _mean(values: dict[str, float]) -> float | None:
    return math.fsum(values.values()) / len(values) if values else None


def _staging(out_dir: Path) -> Path:
    """The staging folder of ``out_dir`` (module docstring), ready to resume; repairs a run killed mid-swap."""
    import shutil

    staging = out_dir.with_name(out_dir.name + STAGING_SUFFIX)
    replaced = staging / REPLACED
    if replaced.is_dir():
        if out_dir.exists():
            shutil.rmtree(replaced)
        else:
            replaced.rename(out_dir)  # killed between the two renames: the last good output goes back
    if (out_dir / REPLACED).is_dir():
        shutil.rmtree(out_dir / REPLACED)  # killed after the swap, before the old output was deleted
    if not staging.exists() and out_dir.is_dir() and not (out_dir / METRICS_FILE).is_file():
        out_dir.rename(staging)  # an unfinished output written in place (rankwise before staging): resume it
    staging.mkdir(parents=True, exist_ok=True)
    (staging / METRICS_FILE).unlink(missing_ok=True)  # only ever present at the moment of the swap
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder in as ``out_dir``: the old output moves aside, the new one moves in, the
    old one is deleted. A run killed between the renames is repaired by :func:`_staging` on the next run."""
    import shutil

    shutil.rmtree(staging / CHUNKS, ignore_errors=True)  # pieces of unfinished stages of other configs
    if out_dir.exists():
        out_dir.rename(staging / REPLACED)
    staging.rename(out_dir)
    shutil.rmtree(out_dir / REPLACED, ignore_errors=True)


def _remove_stale(out_dir: Path, current: set[str], answered: bool, rewritten: bool) -> None:
    """Drop outputs of stages this config no longer has (an earlier config's rerank run, answers, ...)."""
    for path in sorted((out_dir / "runs").glob("*.trec")):
        if path.stem not in current:
            path.unlink()
    if not answered:
        (out_dir / "answers.jsonl").unlink(missing_ok=True)
    if not rewritten:
        (out_dir / "queries.jsonl").unlink(missing_ok=True)
