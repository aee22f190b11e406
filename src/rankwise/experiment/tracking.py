"""Optional experiment tracking, off by default: MLflow (local file store) or Weights & Biases (offline mode).

Both log the flattened resolved config as parameters and every stage's metrics as ``<stage>.<metric>``; the
output folder's files are attached as artifacts (MLflow) or saved (W&B). The backend is opened by
:func:`rankwise.train.tracking_backend.open_run`, which the trainers share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankwise.config.experiment import ExperimentConfig
from rankwise.train.tracking_backend import flatten, open_run

__all__ = ["flatten", "stage_metrics", "track"]


def stage_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"<stage>.<metric>": value}`` for every numeric metric of every stage, plus ``<stage>.seconds``."""
    out: dict[str, float] = {}
    for stage, entry in metrics.get("stages", {}).items():
        for name, value in entry.get("metrics", {}).items():
            if isinstance(value, int | float):
                out[f"{stage}.{name}"] = float(value)
        seconds = entry.get("timing", {}).get("total_s")
        if isinstance(seconds, int | float):
            out[f"{stage}.seconds"] = float(seconds)
    return out


def track(config: ExperimentConfig, metrics: dict[str, Any], out_dir: Path) -> None:
    """Log one data set's run to the configured backend (nothing when ``tracking.backend`` is ``none``)."""
    settings = config.tracking
    run_name = f"{config.name}/{metrics['dataset']['name']}"
    run = open_run(settings.backend, settings.uri, settings.project, run_name, flatten(config.model_dump(mode="json")))
    if run is None:
        return
    try:
        run.log_metrics(stage_metrics(metrics))
        if run.backend == "mlflow":
            run.client.log_artifacts(run.handle, str(out_dir))
        else:
            for path in sorted(out_dir.glob("*.json")):
                run.handle.save(str(path), base_path=str(out_dir), policy="now")
    except BaseException:
        run.finish(failed=True)
        raise
    run.finish()
