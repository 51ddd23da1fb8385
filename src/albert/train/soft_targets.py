"""Distillation by soft targets (Hinton et al.; DistilBERT's for masked LM): the student matches the teacher's
distributions softened by a temperature (KL, scaled by T²) beside the true labels' loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.train.distill_settings import DistillSettings


class _SoftTargets:
    """A task of the loop that adds soft targets to another task's (`base`): its batches, normalisers, evaluation
    and data position are the base's; its statistics are the base's and the soft-target loss's sum."""

    base: Any
    kd_count = "kd_count"  # the statistic the soft-target loss is averaged over

    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        return self.base.step_batches(step, rank, world, micro_batch)

    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return self.base.normalizers(batches)

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        out = self.base.summarize(s)
        out["kd_loss"] = s["kd_sum"] / max(s[self.kd_count], 1)
        return out

    def evaluate(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        return self.base.evaluate(model, device, dtype)

    def data_state(self) -> dict[str, Any]:
        return self.base.data_state()

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.base.load_data_state(state)


class MaskedLMDistillTask(_SoftTargets):
    """Pretraining's masked batches (its data, evaluation and statistics: `PretrainTask`), with the teacher's
    distributions at the masked positions as soft targets: loss = kd_weight · T² · KL(teacher_T ‖ student_T) +
    (1 - kd_weight) · the true tokens' CE, + SOP's CE."""

    kd_count = "mlm_count"

    def __init__(self, pretrain_task: Any, teacher: nn.Module, settings: DistillSettings) -> None:
        self.base, self.teacher = pretrain_task, teacher
        self.kd_weight, self.temperature = settings.soft.kd_weight, settings.soft.kd_temperature
        self.stat_names = [*pretrain_task.stat_names, "kd_sum"]

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "mlm_positions",
                                        "position_ids", "example_ids", "sop_positions") if k in batch}
        self.teacher.to(batch["input_ids"].device)
        with torch.no_grad():
            soft = (self.teacher(**inputs).prediction_logits.float() / self.temperature).log_softmax(-1)  # (B, P, V)
        out = model(**inputs)
        logits = out.prediction_logits.float()
        valid = batch["labels"] != -100
        kd_sum = (F.kl_div((logits / self.temperature).log_softmax(-1), soft, log_target=True, reduction="none").sum(-1)
                  * valid).sum() * self.temperature ** 2
        hard, stats = self.base.loss_from_outputs(out, batch, norm)
        mlm_sum = stats[1]
        loss = hard - (self.kd_weight * mlm_sum / norm[0]).to(hard.dtype) + (self.kd_weight * kd_sum / norm[0])
        return loss.to(torch.float32), torch.cat([stats, kd_sum.detach().double().reshape(1)])


class _Recorder(nn.Module):
    """The student as the task's featurizer calls it, keeping the call's inputs and outputs for the soft targets."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.last: tuple[dict[str, Any], Any] | None = None

    def forward(self, **inputs: Any) -> Any:
        out = self.model(**inputs)
        self.last = (inputs, out)
        return out


class TaskDistillTask(_SoftTargets):
    """The task's own training data, loss, statistics and evaluation (`FinetuneData`), with the teacher's outputs on
    the same inputs as soft targets: loss = (1 - kd_weight) · the task's loss + kd_weight · the soft-target loss."""

    def __init__(self, data: Any, teacher: nn.Module, settings: DistillSettings) -> None:
        self.base, self.teacher = data, teacher
        self.kd_weight, self.temperature = settings.soft.kd_weight, settings.soft.kd_temperature
        self.stat_names = [*data.stat_names, "kd_sum", "kd_count"]

    def soft_loss(self, student: Any, teacher: Any, batch: dict[str, Tensor]) -> tuple[Tensor, float]:
        """Summed over the rows (tokens, for tagging) of the batch: the distance of each of the student's outputs to
        the teacher's, and how many rows."""
        total, rows = torch.zeros((), device=batch["input_ids"].device), 0.0
        for name in ("logits", "start_logits", "end_logits"):
            s, t = getattr(student, name, None), getattr(teacher, name, None)
            if s is None or t is None:
                continue
            s, t = s.float(), t.float()
            if s.shape[-1] == 1 and name == "logits":  # a regression's value
                per = ((s - t) ** 2).squeeze(-1)
            else:
                T = self.temperature
                per = F.kl_div((s / T).log_softmax(-1), (t / T).log_softmax(-1), log_target=True,
                               reduction="none").sum(-1) * T ** 2
            labels = batch.get("labels")
            if labels is not None and labels.shape == per.shape and labels.dtype == torch.long:
                keep = labels != -100  # tagging: the words' first pieces
                per, n = per * keep, float(keep.sum())
            else:
                n = float(per.numel())
            total, rows = total + per.sum(), rows + n
        s_cls, t_cls = getattr(student, "cls_logits", None), getattr(teacher, "cls_logits", None)
        if s_cls is not None and t_cls is not None:  # binary KL: the BCE to the teacher's probability less its own
            p = t_cls.float().sigmoid()
            total = total + (F.binary_cross_entropy_with_logits(s_cls.float(), p, reduction="sum")
                             - F.binary_cross_entropy_with_logits(t_cls.float(), p, reduction="sum"))
        return total, max(rows, 1.0)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        recorder = _Recorder(model)  # (a wrapper only: the model's weights, not copies)
        hard, stats = self.base.loss(recorder, batch, norm)
        assert recorder.last is not None
        inputs, student = recorder.last
        self.teacher.to(batch["input_ids"].device)
        with torch.no_grad():
            teacher = self.teacher(**inputs)
        soft_sum, rows = self.soft_loss(student, teacher, batch)
        examples = stats[1].clamp(min=1)  # the featurizer's count: the rows its loss was summed over
        soft = soft_sum / rows * examples / norm[0].to(soft_sum.dtype)
        loss = (1 - self.kd_weight) * hard + self.kd_weight * soft
        extra = torch.stack([soft_sum.detach().double(), torch.tensor(rows, dtype=torch.float64,
                                                                       device=soft_sum.device)])
        return loss.float(), torch.cat([stats.double(), extra])
