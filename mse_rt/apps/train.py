"""Training MSE-TAD with the reference recipe (docs/spec/training.md), at small scale on CPU.

Label assignment (centre sampling, regression ranges, shortest segment wins), sigmoid focal loss
weighted by the decoded IoU on positives (trident head), 1D DIoU regression loss, loss
normalisation by an EMA of the positive count, AdamW without weight decay on biases / norms /
scales, linear warm-up then cosine decay, gradient clipping and an EMA copy of the weights saved
as ``state_dict_ema``: checkpoints load in the reference code and in :mod:`mse_rt` alike.

Units: ground truth arrives in seconds and is converted to feature-grid steps with the
dataset's fps / feat_stride / num_frames; all losses work in grid steps of each level.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import fpn_strides
from ..io.files import atomic_output
from ..model import MSETAD, build_model
from ..model.detector_graph import boundary_windows
from ..pipeline.padding import make_mask
from ..pipeline.segments import seconds_to_steps, segment_iou


@dataclass
class TrainOptions:
    """Knobs of a run; recipe values from the config's ``opt`` / ``train_cfg`` unless set here."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    warmup_epochs: int | None = None
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 20


def make_points(cfg: dict, T: int) -> torch.Tensor:
    """(P, 4) points of all levels for padded length T: (t * stride, range lo, range hi, stride)."""
    rows = []
    for s, (lo, hi) in zip(fpn_strides(cfg), cfg["model"]["regression_range"]):
        n = T // s
        pts = torch.arange(n, dtype=torch.float32) * s
        rows.append(torch.stack([pts, torch.full_like(pts, lo), torch.full_like(pts, hi), torch.full_like(pts, s)], 1))
    return torch.cat(rows)


def assign_labels(points: torch.Tensor, segs: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of one video: classes (P, K) in {0, 1} and regression (P, 2) in level steps.

    ``segs`` (N, 2) grid steps, ``labels`` (N,). A point is a candidate for a segment when it lies
    strictly inside the centre region (centre +- radius * stride, clipped to the segment) and its
    larger boundary distance is within the level's regression range; the shortest candidate wins
    and segments within 1e-3 of that length all mark their classes positive.
    """
    P = points.shape[0]
    if segs.shape[0] == 0:
        return torch.zeros(P, num_classes), torch.zeros(P, 2)
    t, lo, hi, s = points[:, 0:1], points[:, 1:2], points[:, 2:3], points[:, 3:4]
    left = t - segs[None, :, 0]
    right = segs[None, :, 1] - t
    centre = 0.5 * (segs[None, :, 0] + segs[None, :, 1])
    cb_left = t - torch.maximum(centre - s * radius, segs[None, :, 0])
    cb_right = torch.minimum(centre + s * radius, segs[None, :, 1]) - t
    inside = torch.minimum(cb_left, cb_right) > 0
    far = torch.maximum(left, right)
    in_range = (far >= lo) & (far <= hi)
    lens = (segs[:, 1] - segs[:, 0])[None, :].expand(P, -1).clone()
    lens[~(inside & in_range)] = float("inf")
    min_len, min_idx = lens.min(dim=1)
    tied = (lens <= min_len[:, None] + 1e-3) & torch.isfinite(lens)
    cls = (tied.float() @ F.one_hot(labels, num_classes).float()).clamp(max=1.0)
    reg = torch.stack([left, right], -1)[torch.arange(P), min_idx] / s
    return cls, reg


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss on logits (no reduction)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def iou_1d(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of centred offsets (N, 2) (left, right distances from the same point): the segments
    (-left, right) through :func:`mse_rt.pipeline.segments.segment_iou` (0 for an empty union)."""
    return segment_iou(torch.stack((-pred[:, 0], pred[:, 1]), 1), torch.stack((-target[:, 0], target[:, 1]), 1))


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1D distance-IoU loss of centred offsets (N, 2): 1 - IoU + (centre distance / enclosing)^2."""
    iou = iou_1d(pred, target)
    enclosing = torch.maximum(pred[:, 0], target[:, 0]) + torch.maximum(pred[:, 1], target[:, 1])
    rho = 0.5 * (pred[:, 1] - pred[:, 0] - target[:, 1] + target[:, 0])
    return 1.0 - iou + (rho / enclosing.clamp(min=eps)) ** 2


class Trainer:
    """Holds model, EMA copy, optimiser and the loss-normaliser state of one training run."""

    def __init__(self, cfg: dict, opts: TrainOptions, steps_per_epoch: int) -> None:
        torch.manual_seed(opts.seed)
        self.cfg = cfg
        self.opts = opts
        m, opt_cfg = cfg["model"], cfg["opt"]
        self.model: MSETAD = build_model(cfg).train()
        self._init_weights()
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            is_weight = name.endswith(".weight") and p.dim() > 1  # conv / linear weights only
            (decay if is_weight else no_decay).append(p)
        self.optim = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt_cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opts.learning_rate or opt_cfg["learning_rate"])
        self.base_lr = opts.learning_rate or opt_cfg["learning_rate"]
        self.epochs = opts.epochs or opt_cfg["epochs"]
        warm = opts.warmup_epochs if opts.warmup_epochs is not None else opt_cfg["warmup_epochs"]
        self.warmup_steps = warm * steps_per_epoch
        self.total_steps = max(1, self.epochs * steps_per_epoch)
        self.loss_norm = float(cfg["train_cfg"]["init_loss_norm"])
        self.step_count = 0
        self.num_bins = m["num_bins"]
        self.K = m["num_classes"]

    def _init_weights(self) -> None:
        """The reference's init: MSE depthwise convs ~ N(0, init_conv_vars), biases 0, prior on cls."""
        std = float(self.cfg["model"]["init_conv_vars"])
        for block in [*self.model.backbone.stem, *self.model.backbone.branch]:
            for conv in (block.psi, block.fc, block.convw, block.convkw, block.global_fc):
                if std > 0:
                    torch.nn.init.normal_(conv.weight, 0, std)
                torch.nn.init.zeros_(conv.bias)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * min(1.0, progress)))

    def losses(self, x: torch.Tensor, mask: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        out = self.model(x, mask)
        n = self.num_bins
        B = x.shape[0]
        valid = torch.cat([mk[:, 0] for mk in out["masks"]], dim=1)  # (B, P)
        logits = torch.cat([c.transpose(1, 2) for c in out["cls_logits"]], dim=1)  # (B, P, K)
        gt_cls = torch.stack([t[0] for t in targets])
        gt_reg = torch.stack([t[1] for t in targets])
        pos = (gt_cls.sum(-1) > 0) & valid
        num_pos = int(pos.sum())
        self.loss_norm = 0.9 * self.loss_norm + 0.1 * max(num_pos, 1)
        ls = self.cfg["train_cfg"]["label_smoothing"]
        target = gt_cls[valid] * (1 - ls) + ls / (self.K + 1)
        cls_loss = sigmoid_focal_loss(logits[valid], target)
        if self.model.use_trident_head:
            off = torch.cat([o.reshape(B, 2, n + 1, -1).permute(0, 3, 1, 2) for o in out["offsets"]], 1)
            left = torch.cat([boundary_windows(s, n, True).transpose(1, 2) for s in out["start_logits"]], 1)
            right = torch.cat([boundary_windows(e, n, False).transpose(1, 2) for e in out["end_logits"]], 1)
            j = torch.arange(n + 1, dtype=x.dtype)
            d_left = (torch.softmax(left[pos] + off[pos][:, None, 0], -1) * (n - j)).sum(-1)  # (Npos, K)
            d_right = (torch.softmax(right[pos] + off[pos][:, None, 1], -1) * j).sum(-1)
            pos_cls = gt_cls[pos].bool()
            pred = torch.stack([d_left[pos_cls], d_right[pos_cls]], -1)
            tgt = gt_reg[pos][torch.nonzero(pos_cls)[:, 0]]
            rated = gt_cls[valid] > 0  # positive (point, class) entries, same row-major order as pred
            power = self.cfg["model"]["iou_weight_power"]
            weight = iou_1d(pred.detach(), tgt).clamp(min=0) ** power
            cls_loss = cls_loss.clone()
            cls_loss[rated] = cls_loss[rated] * weight
        else:
            off = torch.cat([o.transpose(1, 2) for o in out["offsets"]], 1)
            pred, tgt = off[pos], gt_reg[pos]
        cls_loss = cls_loss.sum() / self.loss_norm
        reg_loss = diou_loss_1d(pred, tgt).sum() / self.loss_norm if num_pos else 0.0 * pred.sum()
        total = cls_loss + self.cfg["train_cfg"]["loss_weight"] * reg_loss
        return {"cls": cls_loss, "reg": reg_loss, "total": total, "num_pos": num_pos}

    def step(self, x, mask, targets) -> dict:
        for g in self.optim.param_groups:
            g["lr"] = self.lr_at(self.step_count)
        loss = self.losses(x, mask, targets)
        self.optim.zero_grad(set_to_none=True)
        loss["total"].backward()
        clip = self.cfg["train_cfg"]["clip_grad_l2norm"]
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optim.step()
        with torch.no_grad():  # EMA of parameters and buffers
            d = self.opts.ema_decay
            for e, p in zip(self.ema.state_dict().values(), self.model.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(p.detach(), alpha=1 - d)
                else:
                    e.copy_(p)
        self.step_count += 1
        return loss

    def checkpoint(self, epoch: int) -> dict:
        """Reference layout: ``module.``-prefixed ``state_dict`` and ``state_dict_ema``."""
        def prefixed(sd):
            return {f"module.{k}": v.detach().clone() for k, v in sd.items()}

        return {"epoch": epoch, "state_dict": prefixed(self.model.state_dict()),
                "state_dict_ema": prefixed(self.ema.state_dict())}


def crop_video(rng: np.random.Generator, feats: np.ndarray, segs: np.ndarray, labels: np.ndarray, max_len: int,
               trunc_thresh: float, crop_ratio) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop (reference rule): to ``max_len`` when longer, else (with ``crop_ratio``) to a random
    fraction; an action survives when at least ``trunc_thresh`` of it stays inside; retried until one does."""
    T = feats.shape[0]
    if T <= max_len:
        if crop_ratio is None:
            return feats, segs, labels
        target = max(1, int(round(T * rng.uniform(*crop_ratio))))
        if target >= T:
            return feats, segs, labels
    else:
        target = max_len
    for _ in range(100):
        st = int(rng.integers(0, T - target + 1))
        ed = st + target
        cut = np.stack([np.clip(segs[:, 0], st, ed), np.clip(segs[:, 1], st, ed)], 1)
        inside = (cut[:, 1] - cut[:, 0]) / np.maximum(segs[:, 1] - segs[:, 0], 1e-6)
        keep = inside >= trunc_thresh
        if keep.any():
            return feats[st:ed], cut[keep] - st, labels[keep]
    return feats[:target], segs[:0], labels[:0]


def train(cfg: dict, videos: list[dict], opts: TrainOptions, out_path: str | Path | None = None,
          log=print) -> Trainer:
    """Train on ``videos`` (as :func:`mse_rt.io.dataset.read_dataset` returns); optionally save the checkpoint."""
    d, m = cfg["dataset"], cfg["model"]
    rng = np.random.default_rng(opts.seed)
    bs = opts.batch_size or cfg["loader"]["batch_size"]
    steps_per_epoch = max(1, len(videos) // bs)
    trainer = Trainer(cfg, opts, steps_per_epoch)
    T = m["max_seq_len"]
    points = make_points(cfg, T)
    t0 = time.perf_counter()
    for epoch in range(trainer.epochs):
        order = rng.permutation(len(videos))
        for b in range(steps_per_epoch):
            batch = [videos[i] for i in order[b * bs:(b + 1) * bs]]
            x = torch.zeros(len(batch), m["input_dim"], T)
            lengths, targets = [], []
            for i, v in enumerate(batch):
                segs = seconds_to_steps(v["segments"], v["fps"], d["feat_stride"], d["num_frames"])
                f, s, lab = crop_video(rng, v["feats"], segs, v["labels"], T, d["trunc_thresh"], d["crop_ratio"])
                x[i, :, : f.shape[0]] = torch.from_numpy(np.ascontiguousarray(f.T))
                lengths.append(f.shape[0])
                targets.append(assign_labels(points, torch.as_tensor(s, dtype=torch.float32),
                                             torch.as_tensor(lab), m["num_classes"],
                                             cfg["train_cfg"]["center_sample_radius"]))
            if m["input_noise"] > 0:
                x = x + torch.randn_like(x) * m["input_noise"]
            mask = make_mask(torch.tensor(lengths), T)
            loss = trainer.step(x, mask, targets)
            if log and trainer.step_count % opts.log_every == 0:
                log(f"epoch {epoch + 1}/{trainer.epochs} step {trainer.step_count}: "
                    f"loss {loss['total'].item():.3f} (cls {loss['cls'].item():.3f}, "
                    f"reg {float(loss['reg'].detach()):.3f}), lr {trainer.lr_at(trainer.step_count):.2e}, "
                    f"{time.perf_counter() - t0:.0f} s")
    if out_path is not None:
        out_path = Path(out_path)
        with atomic_output(out_path, what="checkpoint") as tmp:
            torch.save(trainer.checkpoint(trainer.epochs), tmp)
        if log:
            log(f"saved {out_path} ({out_path.stat().st_size / 1e6:.1f} MB) after {time.perf_counter() - t0:.0f} s")
    return trainer
