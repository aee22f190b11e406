"""The SFT loss on the answer tokens, with logits computed at those positions only.

trl's ``SFTTrainer`` (1.x) scores the vocabulary at *every* position on the CPU (its compact path, which scores only
the labelled positions, runs on Triton devices only), and adds entropy and top-1 statistics. A RankRAG ranking
example is ~200 tokens of which ~3 are the answer (``True``/``False`` and the end of turn), so on a CPU a good part of
each step went into 49k-wide logits nobody trains on. A SmolLM2 step of 8 on a 2-core AVX2 CPU, fp32: LoRA on every
layer ~20.5 s with trl's loss, ~16 s with this one; on the last 10 layers ~16 s against ~7.8 s. Neither trl nor
transformers offers this loss alone, hence the few lines here: the model's own forward with ``logits_to_keep`` set
to the positions that predict a label (the union over the batch), and the same sum of token NLLs divided by
``num_items_in_batch`` that trl uses. Configurations this does not cover (label smoothing, a custom
``compute_loss_func``, non-NLL loss types, MoE aux losses) fall back to trl's own loss.
"""

from __future__ import annotations

import inspect
from typing import Any

IGNORE = -100


def answer_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """Sum of next-token NLLs over the labelled tokens, over ``num_items_in_batch`` (default: their count)."""
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
    total = F.cross_entropy(logits.float().flatten(0, 1), kept.flatten(), ignore_index=IGNORE, reduction="sum")
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
            loss = answer_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count is global (as trl)
            return loss

    return AnswerOnlyTrainer
