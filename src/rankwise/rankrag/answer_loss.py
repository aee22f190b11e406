"""The SFT loss on the answer tokens, with logits computed at those positions only.

trl's ``SFTTrainer`` (1.x) scores the vocabulary at *every* position on the CPU (its compact path, which scores only
the labelled positions, runs on Triton devices only), and adds entropy and top-1 statistics. A RankRAG ranking
example is ~200 tokens of which ~3 are the answer (``True``/``False`` and the end of turn), so on a CPU a good part of
each step went into 49k-wide logits nobody trains on. A SmolLM2 step of 8 on a 2-core AVX2 CPU, fp32: LoRA on every
layer ~20.5 s with trl's loss, ~16 s with this one; on the last 10 layers ~16 s against ~7.8 s. Neither trl nor
transformers offers this loss alone, hence the few lines here: the model's own forward with ``logits_to_keep`` set
to the positions that predict a label (the union over the batch), and the same sum of token NLLs divided by
``num_items_in_batch`` that trl uses. The trainer logs what trl logs (``entropy``, ``mean_token_accuracy``,
``num_tokens``), computed on the answer tokens (for a ranking example True/False *and* the end of turn).
Configurations this does not cover (label smoothing, a custom ``compute_loss_func``, non-NLL loss types, MoE aux
losses) fall back to trl's own loss.
"""

from __future__ import annotations

import inspect
from typing import Any

IGNORE = -100


def answer_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None, stats: dict[str, Any] | None = None
) -> Any:
    """Sum of next-token NLLs over the labelled tokens, over ``num_items_in_batch`` (default: their count).

    ``stats``, when given, receives the labelled-token count (``valid``), how many of them are the model's top-1
    (``correct``) and the sum of the predictive entropies there (``entropy``), as detached tensors.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = labels[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(-1)  # position p predicts token p + 1
    if keep.numel() == 0:
        keep = torch.zeros(1, dtype=torch.long, device=labels.device)  # no label: a differentiable zero below
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**model_inputs, logits_to_keep=keep, use_cache=False).logits
    kept = targets[:, keep]
    flat, flat_targets = logits.float().flatten(0, 1), kept.flatten()
    total = F.cross_entropy(flat, flat_targets, ignore_index=IGNORE, reduction="sum")
    if stats is not None:
        with torch.no_grad():
            mask = flat_targets != IGNORE
            log_probs = flat[mask].log_softmax(-1)
            stats["valid"] = mask.sum()
            stats["correct"] = (log_probs.argmax(-1) == flat_targets[mask]).sum()
            stats["entropy"] = -(log_probs.exp() * log_probs).sum()
    count = (kept != IGNORE).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def takes_logits_to_keep(model: Any) -> bool:
    """Whether the (peft-unwrapped) model's forward accepts ``logits_to_keep``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def answer_only_trainer(trainer_cls: type) -> type:
    """``trainer_cls`` (an ``SFTTrainer``) with :func:`answer_loss` as its training loss where it applies."""

    class AnswerOnlyTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            plain = (
                not return_outputs
                and "labels" in inputs
                and self.label_smoother is None
                and self.compute_loss_func is None
                and not getattr(self, "aux_loss_enabled", False)
                and getattr(self.args, "loss_type", "nll") == "nll"
                and takes_logits_to_keep(self.accelerator.unwrap_model(model))
            )
            if not plain:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            stats: dict[str, Any] = {}
            loss = answer_loss(model, inputs, num_items_in_batch, stats)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count is global (as trl)
            self._log_answer_stats(inputs, stats)
            return loss

        def _log_answer_stats(self, inputs: dict[str, Any], stats: dict[str, Any]) -> None:
            """The metrics trl's own loss records, under the same names, so logs read the same either way."""
            gather = self.accelerator.gather_for_metrics
            valid = gather(stats["valid"]).sum().item()
            mode = "train" if self.model.training else "eval"
            metrics = self._metrics[mode]
            metrics["entropy"].append(gather(stats["entropy"]).sum().item() / valid if valid else 0.0)
            metrics["mean_token_accuracy"].append(gather(stats["correct"]).sum().item() / valid if valid else 0.0)
            if mode == "train" and "attention_mask" in inputs:
                self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item()
                metrics["num_tokens"] = [self._total_train_tokens]

    return AnswerOnlyTrainer
