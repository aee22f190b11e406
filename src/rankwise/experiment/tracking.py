"""Optional experiment tracking, off by default: MLflow (local file store) or Weights & Biases (offline mode).

Both log the flattened resolved config as parameters and every stage's metrics as ``<stage>.<metric>``; the
output folder's files are attached as artifacts (MLflow) or saved (W&B). Neither library is a dependency:
choosing a backend without it installed raises :class:`~rankwise.errors.MissingExtraError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankwise.config.experiment import ExperimentConfig
from rankwise.errors import MissingExtraError


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their string form."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value if isinstance(value, int | float | str | bool) or value is None else str(value)}


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
    backend = config.tracking.backend
    if backend == "none":
        return
    params = flatten(config.model_dump(mode="json"))
    values = stage_metrics(metrics)
    run_name = f"{config.name}/{metrics['dataset']['name']}"
    if backend == "mlflow":
        try:
            import mlflow
        except ImportError as exc:
            raise MissingExtraError("mlflow", "tracking") from exc
        mlflow.set_tracking_uri(config.tracking.uri or (Path.cwd() / "mlruns").as_uri())
        mlflow.set_experiment(config.tracking.project)
        with mlflow.start_run(run_name=run_name):
            mlflow.log_params(params)
            mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()})
            mlflow.log_artifacts(str(out_dir))
        return
    try:
        import wandb
    except ImportError as exc:
        raise MissingExtraError("wandb", "tracking") from exc
    run = wandb.init(
        project=config.tracking.project, name=run_name, config=params, mode="offline", dir=config.tracking.uri
    )
    run.log(values)
    for path in sorted(out_dir.glob("*.json")):
        run.save(str(path), base_path=str(out_dir), policy="now")
    run.finish()
