"""One data set's stages in order — rewrite, retrieve, fuse, rerank, generate — each through the ledger.

:class:`Ledgered` runs a stage through the ledger (reuse an output whose key matches, else compute, write and
record); :class:`Chain` holds what the stages of one data set share (its queries, runs, keys) and runs them in
order, each keyed by its settings and the keys of the stages before it. :mod:`.runner` stages the output folder,
scores the result and swaps it in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rankwise
from rankwise.build import key_params
from rankwise.config.experiment import ExperimentConfig
from rankwise.data import read_run, write_run
from rankwise.experiment import stages
from rankwise.experiment.cache import Chunks, Ledger, content_hash
from rankwise.types import Dataset, Run

Log = Callable[[str], None]


class Ledgered:
    """Runs stages through the ledger: reuse an output whose key matches (in the staging folder, else in the last
    good output), else compute, write, record."""

    def __init__(self, out_dir: Path, log: Log, previous: Path | None = None) -> None:
        self.out_dir, self.log = out_dir, log
        self.ledger = Ledger(out_dir)
        self.previous = Ledger(previous) if previous is not None and previous.is_dir() else None
        self.keys: dict[str, str] = {}
        self.timing: dict[str, dict[str, Any]] = {}

    def run(
        self,
        name: str,
        key: str,
        file: str,
        compute: Callable[[], tuple[Any, dict[str, Any]]],
        write: Callable[[Any, Path], None],
        read: Callable[[Path], Any],
    ) -> Any:
        cached = self.ledger.lookup(name, key)
        if cached is None and self.previous is not None:
            cached = self.ledger.adopt(self.previous, name, key)
        if cached is not None:
            self.log(f"  {name}: unchanged, reused {file}")
        else:
            self.ledger.forget(name)
            began = time.perf_counter()
            value, info = compute()
            info["total_s"] = round(time.perf_counter() - began, 3)
            write(value, self.out_dir / file)
            self.ledger.record(name, key, file, info)
            cached = info
            self.log(f"  {name}: computed in {info['total_s']:.1f}s -> {file}")
        self.keys[name] = key
        self.timing[name] = cached
        return read(self.out_dir / file)  # use what was written, exactly as a later run reads it


@dataclass
class Chain:
    """The stages of one data set. ``runs`` fills in stage by stage; ``last`` names the final ranking."""

    config: ExperimentConfig
    dataset: Dataset
    done: Ledgered
    out_root: Path
    fingerprint: str
    data_key: str
    allowed: dict[str, list[str]] | None
    show_progress: bool
    log: Log
    search_queries: dict[str, str] = field(init=False)
    search_key: str = field(init=False)
    runs: dict[str, Run] = field(default_factory=dict)
    last: str = ""
    version: str = rankwise.__version__

    def __post_init__(self) -> None:
        self.search_queries, self.search_key = self.dataset.queries, self.data_key

    def _tag(self, name: str) -> Callable[[Run, Path], None]:
        return lambda run, path: write_run(run, path, tag=f"rankwise-{self.config.name}-{name}")

    def rewrite(self, source: Any) -> None:
        """The search queries: the data set's, or their rewrites (then every later stage is keyed by them)."""
        rewrite_config = self.config.rewrite
        if rewrite_config is None:
            return
        # the key names the endpoint, never the variable holding its key (nor the fields a local rewrite leaves unset)
        rewrite_key = rewrite_config.model_dump(
            exclude={"api_key_env"} | ({"endpoint"} if not rewrite_config.endpoint else set())
        )
        self.search_key = content_hash("rewrite", self.version, rewrite_key, self.data_key)
        self.search_queries = self.done.run(
            "rewrite", self.search_key, "queries.jsonl",
            lambda: stages.rewrite(rewrite_config, self.dataset.queries, self.show_progress, source),
            stages.write_queries, stages.read_queries,
        )  # fmt: skip

    def retrieve(self) -> None:
        """Each retriever's run (its index cached under ``.indexes`` by content), then their fusion if configured."""
        index_root = self.out_root / ".indexes"
        for name, section in self.config.retrieve.items():
            index_key = stages.index_key(section, self.fingerprint)
            key = content_hash("retrieve", self.version, section.model_dump(), index_key, self.search_key)
            self.runs[name] = self.done.run(
                name, key, f"runs/{name}.trec",
                lambda section=section: stages.retrieve(
                    section, self.dataset.corpus, self.fingerprint, self.search_queries, index_root,
                    self.show_progress, self.allowed,
                ),
                self._tag(name), read_run,
            )  # fmt: skip
        self.last = list(self.config.retrieve)[-1]
        if len(self.config.retrieve) > 1 and self.config.fuse is not None:
            fuse_config, inputs = self.config.fuse, dict(self.runs)
            keys = [self.done.keys[n] for n in self.config.retrieve]
            key = content_hash("fuse", self.version, fuse_config.model_dump(), keys)
            compute = lambda: (stages.fuse(fuse_config, inputs), {})  # noqa: E731
            self.runs["fuse"] = self.done.run("fuse", key, "runs/fuse.trec", compute, self._tag("fuse"), read_run)
            self.last = "fuse"

    def rerank(self) -> None:
        """The reranker over the final ranking so far (trained first when its section says so), resumable by chunks."""
        rerank_config, upstream = self.config.rerank, self.runs[self.last]
        if rerank_config is None:
            return
        model, train_info = stages.rerank_model(rerank_config, self.out_root / ".models", self.log)
        stamp = stages.model_stamp(model)
        key = content_hash(
            "rerank", self.version, key_params(rerank_config), stamp, self.done.keys[self.last], self.search_key
        )
        chunks = Chunks(self.done.out_dir, "rerank", key)

        def compute() -> tuple[Run, dict[str, Any]]:
            run, info = stages.rerank(
                rerank_config, model, self.search_queries, upstream, self.dataset.corpus, chunks, self.show_progress
            )
            return run, {**train_info, **info}

        self.runs["rerank"] = self.done.run("rerank", key, "runs/rerank.trec", compute, self._tag("rerank"), read_run)
        chunks.clear()
        self.last = "rerank"

    def generate(self, gold: Any) -> list[dict[str, Any]] | None:
        """Answers to the data set's questions from the final ranking (None when the config does not answer)."""
        from rankwise.experiment import answers

        generate_config, final = self.config.generate, self.runs[self.last]
        if generate_config is None:
            return None
        reference = answers.reference_passages(generate_config, gold)
        stamp = stages.model_stamp(getattr(generate_config, "model", None))  # a model retrained in place: new key
        key = content_hash(
            "generate", self.version, answers.key_params(generate_config), stamp, self.done.keys[self.last],
            self.data_key,
        )  # fmt: skip
        chunks = Chunks(self.done.out_dir, "generate", key)
        records = self.done.run(
            "generate", key, "answers.jsonl",
            lambda: answers.generate(
                generate_config, self.dataset.queries, final, self.dataset.corpus, chunks, self.show_progress,
                self.log, reference,
            ),
            answers.write_answers, answers.read_answers,
        )  # fmt: skip
        chunks.clear()
        return records
