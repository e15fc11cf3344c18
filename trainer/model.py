"""Convolutional-recurrent heads over a backbone's spatial feature map, multi-task.

Every architecture maps a feature map (B, C, h, w) to an embedding (B, D) - the penultimate
vector exported to the store - and one linear head per task maps the embedding to logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer import texture
from trainer.cli import UserError


class EffnetBiLSTM(nn.Module):
    """1x1 conv C->512 + BN + ReLU, map as a sequence, 2-layer BiLSTM(256), last states -> MLP."""
    def __init__(self, in_ch: int, dropout: float = 0.3):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_ch, 512, 1, bias=False), nn.BatchNorm2d(512), nn.ReLU())
        self.lstm = nn.LSTM(512, 256, num_layers=2, batch_first=True, bidirectional=True, dropout=dropout)
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, 512), nn.ReLU())
        self.dim = 512

    def forward(self, x):
        seq = self.proj(x).flatten(2).transpose(1, 2)          # (B, h*w, 512)
        _, (h, _) = self.lstm(seq)                               # h: (layers*2, B, 256)
        return self.mlp(torch.cat([h[-2], h[-1]], dim=1))       # forward and backward last states


class ResnetLSTM(nn.Module):
    """Adaptive pool to 7x7, sequence of 49, LSTM(512), final hidden state."""
    def __init__(self, in_ch: int, dropout: float = 0.3):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.norm = nn.LayerNorm(in_ch)
        self.lstm = nn.LSTM(in_ch, 512, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.dim = 512

    def forward(self, x):
        seq = self.norm(self.pool(x).flatten(2).transpose(1, 2))
        _, (h, _) = self.lstm(seq)
        return self.drop(h[-1])


class AttentionPool(nn.Module):
    """Softmax-weighted mean over a sequence (B, T, D) -> (B, D)."""
    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, seq):
        w = torch.softmax(self.score(seq), dim=1)
        return (w * seq).sum(1)


class RowColBiGRU(nn.Module):
    """Project to 320 ch; BiGRU over rows and over columns, attention-pooled, + global avg pool."""
    def __init__(self, in_ch: int, dropout: float = 0.3):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_ch, 320, 1, bias=False), nn.BatchNorm2d(320), nn.ReLU())
        self.row_gru = nn.GRU(320, 160, batch_first=True, bidirectional=True)
        self.col_gru = nn.GRU(320, 160, batch_first=True, bidirectional=True)
        self.row_pool, self.col_pool = AttentionPool(320), AttentionPool(320)
        self.drop = nn.Dropout(dropout)
        self.dim = 960

    def forward(self, x):
        z = self.proj(x)                                   # (B, 320, h, w)
        rows = z.mean(3).transpose(1, 2)                   # (B, h, 320): each row summarised
        cols = z.mean(2).transpose(1, 2)                   # (B, w, 320)
        r = self.row_pool(self.row_gru(rows)[0])
        c = self.col_pool(self.col_gru(cols)[0])
        return self.drop(torch.cat([r, c, z.mean((2, 3))], dim=1))


class ScratchCRNN(nn.Module):
    """From raw pixels: 2 conv+pool blocks, adaptive pool, BiLSTM over rows, mean over time."""
    def __init__(self, in_ch: int = 3, dropout: float = 0.3):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_ch, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(8))
        self.lstm = nn.LSTM(64 * 8, 128, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.dim = 256

    def forward(self, x):
        z = self.convs(x.float())                           # (B, 64, 8, 8)
        seq = z.permute(0, 2, 1, 3).flatten(2)               # (B, 8 rows, 64*8)
        return self.drop(self.lstm(seq)[0].mean(1))


# the --arch names are trainer/specs.py's HEADS (torch-free, for the flags)
ARCHS = {"effnet_bilstm": EffnetBiLSTM, "resnet_lstm": ResnetLSTM,
         "rowcol_bigru": RowColBiGRU, "scratch_crnn": ScratchCRNN}


class TextureBranch(nn.Module):
    """Texture statistics (B, D) -> (B, 256): per-feature standardisation (BatchNorm, as a linear
    probe's scaler), dropout, a linear layer and ReLU."""
    def __init__(self, dim: int, out: int = 256, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(dim), nn.Dropout(dropout), nn.Linear(dim, out), nn.ReLU())
        self.dim = out

    def forward(self, stats):
        bn = self.net[0]
        if self.training and len(stats) == 1:   # BatchNorm cannot estimate from one row: use its running stats
            stats = F.batch_norm(stats, bn.running_mean, bn.running_var, bn.weight, bn.bias, False)
            return self.net[1:](stats)
        return self.net(stats)


class CRNNClassifier(nn.Module):
    """Shared recurrent trunk + one linear head per task.

    forward(features (B, C, h, w)) -> (embedding (B, D), {task: logits (B, n_classes)}).
    With texture_dim > 0 the features are (B, C + k, h, w): the map's first `in_channels` channels
    go to the recurrent trunk, the packed texture statistics behind them (trainer/texture.py) to a
    `TextureBranch`, and the embedding is both concatenated.
    """
    def __init__(self, arch: str, in_channels: int, num_classes: dict[str, int], dropout: float = 0.3,
                 texture_dim: int = 0):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch, self.in_channels, self.texture_dim = arch, in_channels, texture_dim
        self.trunk = ARCHS[arch](in_channels, dropout)
        self.texture = TextureBranch(texture_dim, dropout=dropout) if texture_dim else None
        self.embedding_dim = self.trunk.dim + (self.texture.dim if self.texture is not None else 0)
        self.heads = nn.ModuleDict({t: nn.Linear(self.embedding_dim, n) for t, n in num_classes.items()})

    def forward(self, feats):
        feats = feats.float()
        if self.texture is None:
            emb = self.trunk(feats)
        else:
            maps, stats = texture.unpack(feats, self.in_channels, self.texture_dim)
            emb = torch.cat([self.trunk(maps), self.texture(stats)], dim=1)
        return emb, {t: h(emb) for t, h in self.heads.items()}

    def optimizer_groups(self, lr: float, tail_lr: float) -> tuple[list[dict], list[float]]:
        """AdamW parameter groups and their peak learning rates: one group at lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}], [lr]


class EndToEnd(nn.Module):
    """Backbone + head, for `--finetune` (images in, same outputs as CRNNClassifier)."""
    def __init__(self, backbone: nn.Module, head: CRNNClassifier):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images):
        return self.head(self.backbone(images))

    def optimizer_groups(self, lr: float, tail_lr: float) -> tuple[list[dict], list[float]]:
        """AdamW parameter groups and their peak learning rates: one group at lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}], [lr]


class TailHead(nn.Module):
    """The backbone's last stage (trainable) + head, for `--tune-tail`: cached stage maps in, same
    outputs as CRNNClassifier. The tail's BatchNorm keeps its ImageNet statistics (eval mode even
    in training): batches of 64 paintings are too few to re-estimate them, and at the first step
    the model is exactly the frozen one."""
    def __init__(self, tail: nn.Module, head: CRNNClassifier):
        super().__init__()
        self.tail, self.head = tail, head
        self.embedding_dim = head.embedding_dim

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.tail.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, stage_maps):
        return self.head(self.tail(stage_maps.float()))

    def optimizer_groups(self, lr: float, tail_lr: float) -> tuple[list[dict], list[float]]:
        """The pretrained tail at lr * tail_lr, the new head at lr (differential learning rates:
        pretrained layers move less than the new head)."""
        tail = [p for p in self.tail.parameters() if p.requires_grad]
        rest = [p for p in self.head.parameters() if p.requires_grad]
        return [{"params": tail, "lr": lr * tail_lr}, {"params": rest, "lr": lr}], [lr * tail_lr, lr]


def masked_multitask_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                          class_weights: dict[str, torch.Tensor] | None = None,
                          label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum over tasks of cross-entropy on the rows that have a label (target -1 = missing).

    A task with no labelled row in the batch contributes nothing (not NaN), and so does one whose
    labelled rows all have classes of weight 0 (absent from the rows the weights were counted on:
    torch would divide 0 by 0 and poison every weight).
    """
    total = logits[next(iter(logits))].new_zeros(())
    for task, lg in logits.items():
        t = targets[task]
        if not (t >= 0).any():
            continue
        w = class_weights.get(task) if class_weights else None
        if w is not None and not (w[t[t >= 0]] > 0).any():
            continue
        total = total + F.cross_entropy(lg, t, weight=w, ignore_index=-1, label_smoothing=label_smoothing)
    return total


def soft_multitask_loss(logits: dict[str, torch.Tensor], soft: dict[str, torch.Tensor], mask: dict[str, torch.Tensor],
                        class_weights: dict[str, torch.Tensor] | None = None,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """`masked_multitask_loss` for mixed (MixUp/CutMix) targets: soft {task: (B, C)} rows summing
    to 1, mask {task: (B,)} bool = the row's target is known. Per task, the class-weighted
    cross-entropy summed over known rows over the sum of their target weights: for one-hot targets
    this is exactly F.cross_entropy(weight=w, ignore_index=-1), so mixing off changes nothing."""
    total = logits[next(iter(logits))].new_zeros(())
    for task, lg in logits.items():
        m = mask[task]
        if not m.any():
            continue
        p = soft[task][m].float()
        n = p.shape[1]
        if label_smoothing:
            p = p * (1 - label_smoothing) + label_smoothing / n
        w = class_weights.get(task) if class_weights else None
        logq = F.log_softmax(lg[m].float(), dim=1)
        wp = p * w if w is not None else p
        # torch's weighted CE with smoothing: numerator weights each class term by w_c, the
        # denominator is the weight of the true class only
        denom = (soft[task][m].float() * w).sum() if w is not None else torch.tensor(float(m.sum()))
        total = total - (wp * logq).sum() / denom.clamp_min(1e-12)
    return total
