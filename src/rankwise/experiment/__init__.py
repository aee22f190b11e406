"""Experiments: one YAML config, one command, one output folder per data set (see :mod:`.runner`).

``run_experiment(config, datasets)`` runs the configured stages and writes ``metrics.json``;
:mod:`.outputs` reads output folders back for ``rankwise compare``, ``check`` and ``report``.
"""

from rankwise.experiment.outputs import Output, load_output, stable_view
from rankwise.experiment.runner import run_experiment

__all__ = ["Output", "load_output", "run_experiment", "stable_view"]
