"""Training runs tracked like experiments: the retriever, cross-encoder and RankRAG trainers share this.

``tracker = start_tracking(config.tracking, "retriever", config)`` opens a run (MLflow file store or W&B
offline, through :func:`rankwise.train.tracking_backend.open_run`) with the flattened config as parameters;
``tracker.callback()`` is a ``TrainerCallback`` that logs every Trainer log (loss, learning rate, dev metrics)
at its global step.
``tracker.finish(model_dir, summary, best_checkpoint=..., final_is_best=...)`` logs the summary's numbers as the
final metrics and the saved model marked ``latest`` — and ``best`` when it holds the best checkpoint's weights
(``load_best``, or no dev evaluation picked another); otherwise the best checkpoint's folder is logged too, marked
``best``. With ``tracking.backend: none`` (the default) the tracker does nothing.

Transformers' own ``report_to`` integrations were not used: they log metrics but not the aliases, the W&B one
needs ``WANDB_MODE`` set in the environment and the MLflow one uses the fluent (process-global) API, so this
callback is less code than bending them. Only the main process logs under ``torchrun``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rankwise.config.sections.run import TrackingConfig
from rankwise.train.tracking_backend import TrackedRun, flatten, numeric, open_run


class TrainingTracker:
    """The open run of one training (``run`` is None when tracking is off or on a non-main process)."""

    def __init__(self, run: TrackedRun | None, kind: str) -> None:
        self.run, self.kind = run, kind

    def callback(self) -> Any:
        """A ``TrainerCallback`` logging every Trainer log at its global step (transformers imported here: the
        RankRAG trainer's module is loaded without it)."""
        from transformers import TrainerCallback

        tracker = self

        class TrackingCallback(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
                if tracker.run is not None and logs and state.is_world_process_zero:
                    tracker.run.log_metrics(numeric(logs), step=state.global_step)

        return TrackingCallback()

    def finish(
        self,
        model_dir: Path,
        summary: dict[str, Any],
        best_checkpoint: str | None = None,
        final_is_best: bool = True,
    ) -> None:
        """Log the final figures and the model with best/latest marked, then close the run."""
        if self.run is None:
            return
        run, self.run = self.run, None
        try:
            run.log_summary(numeric(flatten(summary)))
            best_here = final_is_best or not best_checkpoint
            run.log_model(model_dir, "model", ["latest", "best"] if best_here else ["latest"], f"{self.kind}-model")
            if not best_here and best_checkpoint:
                run.log_model(Path(best_checkpoint), "best", ["best"], f"{self.kind}-model")
            run.set_tags({"rankwise.best_checkpoint": str(best_checkpoint or "final model")})
        except BaseException:
            run.finish(failed=True)
            raise
        run.finish()


def start_tracking(settings: TrackingConfig, kind: str, config: BaseModel) -> TrainingTracker:
    """Open the run of one ``kind`` of training (``retriever``, ``reranker``, ``rankrag``) with its config."""
    if settings.backend == "none" or int(os.environ.get("RANK", "0")) != 0:
        return TrainingTracker(None, kind)
    output = getattr(config, "output_dir", "") or ""
    params = {"kind": kind, **flatten(config.model_dump(mode="json"))}
    run_name = f"{kind}/{Path(output).name}" if output else kind
    return TrainingTracker(open_run(settings.backend, settings.uri, settings.project, run_name, params), kind)
