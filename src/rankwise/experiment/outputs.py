"""Reading experiment output folders back: for ``rankwise compare``, ``check`` and ``report``.

An output is ``<out_root>/<experiment>/<dataset>/`` with a ``metrics.json``. A run works in the staging folder
``<dataset>.partial/`` beside it and renames that into place only once it has finished, so an output folder always
holds one complete run; a staging folder is never read as a result (naming one is refused, and an experiment
folder's data sets leave them out). Arguments may name an output folder, its ``metrics.json``, or an experiment
folder (every data set under it). ``FOLDER:STAGE`` picks one ranking stage (default: the final one), so two
stages of one run can be compared (``out/scifact:fuse out/scifact:rerank``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankwise.data import read_qrels, read_run
from rankwise.errors import RankwiseError
from rankwise.types import Qrels, Run

METRICS_FILE = "metrics.json"
STAGING_SUFFIX = ".partial"  # <dataset>.partial/: the unfinished run of <dataset>/ (see rankwise.experiment.runner)
VOLATILE = ("timing", "latency_s")  # how a run went (seconds, cache hits); everything else is deterministic


def stable_view(value: Any) -> Any:
    """``metrics.json`` without its volatile parts (:data:`VOLATILE`): equal for equal config and data."""
    if isinstance(value, dict):
        return {k: stable_view(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable_view(v) for v in value]
    return value


@dataclass
class Output:
    """One finished output folder."""

    path: Path
    metrics: dict[str, Any]
    _per_query: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.metrics.get('experiment', '?')}/{self.metrics.get('dataset', {}).get('name', self.path.name)}"

    @property
    def stages(self) -> list[str]:
        return list(self.metrics.get("stages", {}))

    @property
    def final_stage(self) -> str:
        return str(self.metrics.get("final_stage") or self.stages[-1])

    def stage(self, name: str) -> dict[str, Any]:
        if name not in self.metrics.get("stages", {}):
            raise RankwiseError(f"{self.path}: no stage {name!r} (stages: {', '.join(self.stages)})")
        return self.metrics["stages"][name]

    @property
    def per_query(self) -> dict[str, Any]:
        if self._per_query is None:
            path = self.path / "per_query.json"
            if not path.is_file():
                raise RankwiseError(f"{self.path}: per_query.json is missing; re-run the experiment")
            self._per_query = _read_per_query(path)
        return self._per_query

    def run(self, stage: str) -> Run:
        return read_run(self.path / self.stage(stage)["run"])

    def qrels(self) -> Qrels:
        return read_qrels(self.path / "qrels.tsv")


def _read_per_query(path: Path) -> dict[str, Any]:
    """``{stage: {metric: {query id: value}}}`` from ``per_query.json``; any other shape is a RankwiseError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RankwiseError(f"{path}: not valid JSON ({exc})") from None
    shape = "expected {stage: {metric: {query id: number}}} as rankwise run writes it; re-run the experiment"
    if not isinstance(data, dict):
        raise RankwiseError(f"{path}: found a JSON {type(data).__name__} at the top level, {shape}")
    for stage, metrics in data.items():
        if not isinstance(metrics, dict):
            raise RankwiseError(f"{path}: stage {stage!r} holds a JSON {type(metrics).__name__}, {shape}")
        for metric, values in metrics.items():
            if not isinstance(values, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
            ):
                raise RankwiseError(f"{path}: {stage}.{metric} is not a {{query id: number}} mapping, {shape}")
    return data


def _read(folder: Path) -> Output:
    path = folder / METRICS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RankwiseError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict) or "stages" not in metrics:
        raise RankwiseError(f"{path}: not a rankwise experiment metrics.json (no 'stages')")
    return Output(folder, metrics)


def load_output(path: str | Path) -> Output:
    """The output folder at ``path`` (or whose ``metrics.json`` is ``path``)."""
    path = Path(path)
    folder = path.parent if path.name == METRICS_FILE else path
    if is_staging(folder):
        finished = folder.with_name(folder.name.removesuffix(STAGING_SUFFIX))
        raise RankwiseError(
            f"{folder}: the working folder of an unfinished run, not a result; its last finished output is {finished}"
        )
    if not (folder / METRICS_FILE).is_file():
        if not folder.exists():
            raise RankwiseError(f"{folder}: no such output folder")
        raise RankwiseError(f"{folder}: no {METRICS_FILE} (not an experiment output, or its run did not finish)")
    return _read(folder)


def load_outputs(paths: Sequence[str | Path]) -> list[Output]:
    """Outputs named by ``paths``; an experiment folder stands for every data set folder under it."""
    outputs: list[Output] = []
    for item in paths:
        path = Path(item)
        if path.is_dir() and not (path / METRICS_FILE).is_file():
            found = sorted(p.parent for p in path.glob(f"*/{METRICS_FILE}") if not is_staging(p.parent))
            if found:
                outputs.extend(_read(folder) for folder in found)
                continue
        outputs.append(load_output(path))
    return outputs


def is_staging(folder: Path) -> bool:
    """Whether ``folder`` is an unfinished run's staging folder (``<dataset>.partial``)."""
    return folder.name.endswith(STAGING_SUFFIX)


def split_stage(spec: str) -> tuple[str, str | None]:
    """``"out/scifact:rerank"`` -> ``("out/scifact", "rerank")``; a plain path -> ``(path, None)``."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and "/" not in tail and not Path(spec).exists():
        return head, tail
    return spec, None


@dataclass(frozen=True)
class System:
    """One ranking to compare: an output's stage, its mean metrics and per-query values."""

    label: str
    output: Output
    stage: str

    def means(self) -> dict[str, float]:
        return dict(self.output.stage(self.stage)["metrics"])

    def per_query(self, metric: str) -> dict[str, float]:
        values = self.output.per_query.get(self.stage, {})
        if metric not in values:
            raise RankwiseError(f"{self.output.path}: no per-query {metric!r} for stage {self.stage!r}")
        return dict(values[metric])


def load_systems(specs: Sequence[str]) -> list[System]:
    """``OUT`` or ``OUT:STAGE`` arguments as systems (experiment folders expand to their data sets)."""
    systems: list[System] = []
    for spec in specs:
        path, stage = split_stage(spec)
        for output in load_outputs([path]):
            chosen = stage or output.final_stage
            output.stage(chosen)  # validate
            label = output.label if stage is None else f"{output.label}:{stage}"
            systems.append(System(label, output, chosen))
    labels = [s.label for s in systems]
    if len(set(labels)) != len(labels):
        systems = [System(f"{s.label} ({s.output.path})", s.output, s.stage) for s in systems]
    return systems
