"""Pre-NMS candidate segments of one video, and the few operations every stage needs on them."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Candidates:
    """Candidates of one video: ``segments`` (N, 2) float32 in level-0 feature-grid steps,
    ``scores`` (N,) float32, ``labels`` (N,) int64 class ids.

    Decode returns them level by level (level order, score-descending within a level); the
    order matters to soft-NMS, which breaks exact score ties by position (docs/spec/nms.md).
    """

    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Candidates:
        """No candidates (CPU tensors of the usual dtypes)."""
        return cls(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64))

    @classmethod
    def cat(cls, parts: list[Candidates]) -> Candidates:
        """The parts one after the other (order kept); empty parts are skipped."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(torch.cat([p.segments for p in parts]), torch.cat([p.scores for p in parts]),
                   torch.cat([p.labels for p in parts]))

    def select(self, index: torch.Tensor) -> Candidates:
        """The candidates picked by a boolean mask (N,) or an index tensor, in that order."""
        return Candidates(self.segments[index], self.scores[index], self.labels[index])

    def shifted(self, steps: float) -> Candidates:
        """The same candidates with segments moved by ``steps`` grid steps (window -> stream time)."""
        return Candidates(self.segments + steps, self.scores, self.labels)

    def cpu(self) -> Candidates:
        return Candidates(self.segments.cpu(), self.scores.cpu(), self.labels.cpu())
