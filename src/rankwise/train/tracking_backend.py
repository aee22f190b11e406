"""The one place that opens a tracking run: MLflow (local file store by default) or Weights & Biases (offline mode).

Used by the trainers (:mod:`rankwise.train.tracking`) and by experiments (:mod:`rankwise.experiment.tracking`,
which already imports ``train/`` for cross-encoder training; the package root takes no new module).
Neither library is a dependency: choosing a backend without it installed raises
:class:`~rankwise.errors.MissingExtraError` naming the ``rankwise[tracking]`` extra. The configuration is
``TrackingConfig`` (``backend``, ``uri``, ``project``); this module takes its three values, so it reads no config.

"best" and "latest" are marked on logged models: MLflow gets the files under an artifact path plus the tags
``rankwise.best`` / ``rankwise.latest`` naming that path (the file store has no model registry, so no registry
aliases); W&B gets a ``model`` artifact with the aliases ``best`` / ``latest``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from rankwise.errors import MissingExtraError, RankwiseError

_MLFLOW_KEY = re.compile(r"[^\w\-. /]")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their string form."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value if isinstance(value, int | float | str | bool) or value is None else str(value)}


def numeric(values: dict[str, Any]) -> dict[str, float]:
    """The int/float entries of a flat mapping (bools left out), as floats."""
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class TrackedRun:
    """An open run of either backend: params once, metrics (optionally per step), directories, models."""

    def __init__(self, backend: str, handle: Any, client: Any = None) -> None:
        self.backend, self.handle, self.client = backend, handle, client

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if not values:
            return
        if self.backend == "wandb":
            self.handle.log(values, step=step)
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(k), v, now, step or 0) for k, v in values.items()]
        self.client.log_batch(self.handle, metrics=metrics)

    def log_summary(self, values: dict[str, float]) -> None:
        """Final figures: W&B's run summary; MLflow's metrics (the last value of each is what its UI shows)."""
        if self.backend == "wandb":
            self.handle.summary.update(values)
        else:
            self.log_metrics(values)

    def log_dir(self, path: Path, name: str) -> None:
        """Attach the files of ``path`` (MLflow artifacts under ``name``; W&B files saved under ``name``/)."""
        if self.backend == "mlflow":
            self.client.log_artifacts(self.handle, str(path), name)
            return
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            self.handle.save(str(file), base_path=str(path.parent), policy="now")

    def log_model(self, path: Path, name: str, aliases: list[str], collection: str) -> None:
        """Attach a model folder marked with ``aliases`` (``best``, ``latest``): MLflow artifacts under ``name``
        and a tag ``rankwise.<alias>`` = ``name`` per alias; W&B a version of the ``collection`` model artifact."""
        if self.backend == "wandb":
            import wandb

            artifact = wandb.Artifact(collection, type="model")
            artifact.add_dir(str(path))
            self.handle.log_artifact(artifact, aliases=aliases)
            return
        self.client.log_artifacts(self.handle, str(path), name)
        for alias in aliases:
            self.client.set_tag(self.handle, f"rankwise.{alias}", name)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.backend == "wandb":
            self.handle.summary.update(tags)
            return
        for key, value in tags.items():
            self.client.set_tag(self.handle, key, value)

    def finish(self, failed: bool = False) -> None:
        if self.backend == "wandb":
            self.handle.finish(exit_code=1 if failed else 0)
        else:
            self.client.set_terminated(self.handle, "FAILED" if failed else "FINISHED")


def _mlflow_key(key: str) -> str:
    """MLflow names allow letters, digits, ``_-. /``: ``nDCG@10`` -> ``nDCG_at_10``."""
    return _MLFLOW_KEY.sub("_", key.replace("@", "_at_"))


def open_run(backend: str, uri: str | None, project: str, run_name: str, params: dict[str, Any]) -> TrackedRun | None:
    """Start a run logging ``params`` (None when ``backend`` is ``none``); the caller calls ``finish``."""
    if backend == "none":
        return None
    if backend == "mlflow":
        try:
            import mlflow  # noqa: F401  (first: a submodule already imported would hide a blocked package)
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise MissingExtraError("mlflow-skinny", "tracking") from exc
        uri = uri or (Path.cwd() / "mlruns").as_uri()
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses its file store unless asked; it is the offline, serverless store we want here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(project)
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
        values = [Param(_mlflow_key(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(values), 100):  # log_batch takes at most 100 params per call
            client.log_batch(run_id, params=values[start : start + 100])
        return TrackedRun("mlflow", run_id, client)
    if backend == "wandb":
        try:
            import wandb
        except ImportError as exc:
            raise MissingExtraError("wandb", "tracking") from exc
        if uri:
            Path(uri).mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=project, name=run_name, config=params, mode="offline", dir=uri, reinit="create_new")
        return TrackedRun("wandb", run)
    raise RankwiseError(f"tracking.backend must be none, mlflow or wandb, not '{backend}'")
