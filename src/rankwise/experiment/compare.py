"""Comparison tables: every system against the first (the baseline), per metric, with paired significance tests.

A difference is marked significant (▲ better, ▼ worse) when the paired randomisation test's p-value, after the
chosen multiple-comparison correction over all (metric, system) pairs of the table, is below ``alpha``; the
paired t-test's p-value is shown beside it (same correction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.evaluate.stats import PairedComparison, adjust_pvalues, compare_paired
from rankwise.experiment.outputs import System


@dataclass(frozen=True)
class Row:
    label: str
    mean: float
    queries: int
    versus: PairedComparison | None = None  # None for the baseline row
    p_t: float | None = None  # corrected
    p_permutation: float | None = None  # corrected
    significant: bool = False

    @property
    def marker(self) -> str:
        if not self.significant or self.versus is None:
            return ""
        return "▲" if self.versus.delta > 0 else "▼"


def group_by_dataset(systems: Sequence[System]) -> dict[str, list[System]]:
    """Systems per data set, in order (only systems of one data set share queries to pair); the data set name is
    dropped from the labels (``exp/scifact:rerank`` -> ``exp:rerank``) when that keeps them distinct."""
    groups: dict[str, list[System]] = {}
    for system in systems:
        name = str(system.output.metrics.get("dataset", {}).get("name", system.output.path.name))
        groups.setdefault(name, []).append(system)
    for name, members in groups.items():
        short = [s.label.replace(f"/{name}", "", 1) for s in members]
        if len(set(short)) == len(short):
            groups[name] = [System(label, s.output, s.stage) for label, s in zip(short, members, strict=True)]
    return groups


def shared_metrics(systems: Sequence[System]) -> list[str]:
    """Metrics every system has, in the baseline's order."""
    names = list(systems[0].means())
    return [n for n in names if all(n in s.means() for s in systems[1:])]


def compare_systems(
    systems: Sequence[System],
    metrics: Sequence[str] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    permutations: int = 10_000,
    seed: int = 0,
) -> dict[str, list[Row]]:
    """``{metric: [baseline row, row per other system]}``; see the module docstring for the marks."""
    if len(systems) < 2:
        raise RankwiseError("compare needs at least two systems (output folders or FOLDER:STAGE)")
    names = list(metrics) if metrics else shared_metrics(systems)
    if not names:
        raise RankwiseError("the systems share no metric; pass --metric names they all have")
    pairs: list[tuple[str, int, PairedComparison]] = []
    for name in names:
        baseline = systems[0].per_query(name)
        for index, system in enumerate(systems[1:], start=1):
            pairs.append((name, index, compare_paired(baseline, system.per_query(name), permutations, seed)))
    p_t = adjust_pvalues([c.p_t for _, _, c in pairs], correction)
    p_perm = adjust_pvalues([c.p_permutation for _, _, c in pairs], correction)
    tables: dict[str, list[Row]] = {}
    for name in names:
        values = systems[0].per_query(name)
        tables[name] = [Row(systems[0].label, sum(values.values()) / len(values), len(values))]
    for (name, index, comparison), pt, pp in zip(pairs, p_t, p_perm, strict=True):
        system = systems[index]
        tables[name].append(Row(system.label, comparison.mean_b, comparison.queries, comparison, pt, pp, pp < alpha))
    return tables


def dataset_warnings(systems: Sequence[System]) -> list[str]:
    """The data-set warnings recorded in the systems' ``metrics.json`` (e.g. MT-RAG's pooled-evaluation note), once."""
    seen: dict[str, None] = {}
    for system in systems:
        seen.update(dict.fromkeys(str(w) for w in system.output.metrics.get("warnings", [])))
    return list(seen)


def to_json(tables: dict[str, list[Row]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in tables.items():
        out[name] = []
        for row in rows:
            entry: dict[str, Any] = {"system": row.label, "mean": row.mean, "queries": row.queries}
            if row.versus is not None:
                entry.update(
                    baseline_mean=row.versus.mean_a,
                    delta=row.versus.delta,
                    relative=row.versus.relative,
                    t=row.versus.t,
                    p_t=row.p_t,
                    p_permutation=row.p_permutation,
                    wins=row.versus.wins,
                    ties=row.versus.ties,
                    losses=row.versus.losses,
                    significant=row.significant,
                )
            out[name].append(entry)
    return out


def cells(row: Row) -> list[str]:
    """Display cells: system, mean, Δ, Δ%, p (t), p (perm), W/T/L, mark."""
    if row.versus is None:
        return [row.label, f"{row.mean:.4f}", "baseline", "", "", "", "", ""]
    relative = "" if row.versus.relative is None else f"{100 * row.versus.relative:+.1f}%"
    return [
        row.label,
        f"{row.mean:.4f}",
        f"{row.versus.delta:+.4f}",
        relative,
        _p(row.p_t),
        _p(row.p_permutation),
        f"{row.versus.wins}/{row.versus.ties}/{row.versus.losses}",
        row.marker,
    ]


HEADERS = ["system", "mean", "Δ", "Δ%", "p (t-test)", "p (perm.)", "W/T/L", "sig."]


def _p(value: float | None) -> str:
    if value is None:
        return ""
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def to_markdown(tables: dict[str, list[Row]], alpha: float, correction: str) -> str:
    lines = []
    for name, rows in tables.items():
        lines += [f"**{name}** ({rows[0].queries} queries)", "", "| " + " | ".join(HEADERS) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|")
        lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
        lines.append("")
    lines.append(
        f"▲/▼: paired randomisation test p < {alpha} against the first system ({correction} correction over "
        "all comparisons shown); W/T/L = queries better/equal/worse."
    )
    return "\n".join(lines)
