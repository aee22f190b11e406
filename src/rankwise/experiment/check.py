"""``rankwise check``: compare an experiment's metrics with the ranges its ``*.expected.yaml`` allows.

An expected file (a reproduction matrix entry, like Pyserini's 2CR but end to end)::

    experiment: scifact-hybrid          # optional: must match the output's experiment name
    datasets:
      scifact:                          # output folder name under outputs/<experiment>/
        bm25:                           # stage
          nDCG@10: [0.680, 0.692]       # inclusive range
          R@100: {min: 0.90}            # open-ended
        fuse:
          nDCG@10: {value: 0.70, tolerance: 0.005}

A metric name is looked up in the stage's ``metrics``, then in its ``sweep`` (``nDCG@5``, ``R@20``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rankwise.errors import RankwiseError
from rankwise.experiment.outputs import Output, load_outputs


@dataclass(frozen=True)
class Expectation:
    dataset: str
    stage: str
    metric: str
    low: float
    high: float

    def describe(self) -> str:
        if math.isinf(self.low):
            return f"<= {self.high:g}"
        if math.isinf(self.high):
            return f">= {self.low:g}"
        return f"[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Outcome:
    expectation: Expectation
    value: float | None
    problem: str = ""

    @property
    def passed(self) -> bool:
        return (
            not self.problem
            and self.value is not None
            and (self.expectation.low <= self.value <= self.expectation.high)
        )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RankwiseError(f"{where}: expected a number, got {value!r}")
    return float(value)


def parse_range(value: Any, where: str) -> tuple[float, float]:
    """``[lo, hi]``, ``{min, max}`` (either may be left out) or ``{value, tolerance}`` as ``(low, high)``."""
    if isinstance(value, list) and len(value) == 2:
        low, high = _number(value[0], where), _number(value[1], where)
    elif isinstance(value, dict) and set(value) <= {"min", "max"} and value:
        low = _number(value["min"], f"{where}.min") if "min" in value else -math.inf
        high = _number(value["max"], f"{where}.max") if "max" in value else math.inf
    elif isinstance(value, dict) and set(value) == {"value", "tolerance"}:
        centre, tolerance = _number(value["value"], f"{where}.value"), _number(value["tolerance"], where)
        low, high = centre - abs(tolerance), centre + abs(tolerance)
    else:
        raise RankwiseError(
            f"{where}: expected [low, high], {{min: , max: }} or {{value: , tolerance: }}, got {value!r}"
        )
    if low > high:
        raise RankwiseError(f"{where}: empty range ({low} > {high})")
    return low, high


def load_expected(path: str | Path) -> tuple[str | None, list[Expectation]]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RankwiseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise RankwiseError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise RankwiseError(
            f"{path}: expected a mapping with 'datasets: {{<dataset>: {{<stage>: {{<metric>: range}}}}}}'"
        )
    unknown = sorted(set(data) - {"experiment", "datasets", "note"})
    if unknown:
        raise RankwiseError(f"{path}: unknown key(s) {', '.join(unknown)} (known: experiment, datasets, note)")
    expectations = []
    for dataset, stages in data["datasets"].items():
        if not isinstance(stages, dict):
            raise RankwiseError(f"{path}: datasets.{dataset}: expected a mapping of stages")
        for stage, metrics in stages.items():
            if not isinstance(metrics, dict):
                raise RankwiseError(f"{path}: datasets.{dataset}.{stage}: expected a mapping of metrics")
            for metric, value in metrics.items():
                low, high = parse_range(value, f"{path}: datasets.{dataset}.{stage}.{metric}")
                expectations.append(Expectation(str(dataset), str(stage), str(metric), low, high))
    experiment = data.get("experiment")
    return (str(experiment) if experiment is not None else None), expectations


def lookup(output: Output, stage: str, metric: str) -> float | None:
    entry = output.metrics.get("stages", {}).get(stage)
    if entry is None:
        return None
    if metric in entry.get("metrics", {}):
        return float(entry["metrics"][metric])
    family, _, cutoff = metric.partition("@")
    sweep = entry.get("sweep", {}).get(family, {})
    return float(sweep[cutoff]) if cutoff in sweep else None


def check(outputs_path: str | Path, expected_path: str | Path) -> list[Outcome]:
    """One outcome per expectation; an output, stage or metric that is missing fails with a reason."""
    experiment, expectations = load_expected(expected_path)
    outputs = {o.metrics.get("dataset", {}).get("name", o.path.name): o for o in load_outputs([outputs_path])}
    outcomes = []
    for exp in expectations:
        output = outputs.get(exp.dataset)
        if output is None:
            outcomes.append(Outcome(exp, None, f"no output for data set {exp.dataset!r} under {outputs_path}"))
            continue
        if experiment is not None and output.metrics.get("experiment") != experiment:
            problem = f"output is experiment {output.metrics.get('experiment')!r}, expected {experiment!r}"
            outcomes.append(Outcome(exp, None, problem))
            continue
        value = lookup(output, exp.stage, exp.metric)
        problem = "" if value is not None else f"stage {exp.stage!r} has no metric {exp.metric!r}"
        outcomes.append(Outcome(exp, value, problem))
    return outcomes


def expected_from(outputs_path: str | Path, tolerance: float, note: str = "") -> str:
    """An expected file (YAML text) that accepts the outputs' current metrics within ``tolerance``."""
    outputs = load_outputs([outputs_path])
    experiments = {o.metrics.get("experiment") for o in outputs}
    datasets: dict[str, Any] = {}
    for output in outputs:
        stages: dict[str, Any] = {}
        for stage in output.stages:
            metrics = output.stage(stage).get("metrics", {})
            stages[stage] = {
                name: [round(value - tolerance, 4), round(value + tolerance, 4)]
                for name, value in metrics.items()
                if isinstance(value, int | float)
            }
        datasets[output.metrics.get("dataset", {}).get("name", output.path.name)] = stages
    data: dict[str, Any] = {}
    if len(experiments) == 1:
        data["experiment"] = experiments.pop()
    if note:
        data["note"] = note
    data["datasets"] = datasets
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
