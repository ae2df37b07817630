"""Text classifiers: a BERT-tiny-shaped Transformer encoder and an LSTM, on token ids.

- ``bert_tiny``: the shape of Google's BERT-Tiny (Turc et al. 2019, L=2, H=128, A=2,
  intermediate 512, GELU, post-norm, LayerNorm eps 1e-12): word + learned position + segment
  embeddings, two encoder layers, the BERT pooler (tanh dense on the [CLS] position) and a
  linear classifier. With BERT's 30,522-token vocabulary and 512 positions it would have the
  published 4.4 M parameters; the defaults use a small vocabulary so the embedding does not
  dominate the step.
- ``lstm_text``: embedding, one LSTM layer, mean over the non-padding positions, linear.

Batches are int64 ``[batch, seq_len]`` token ids from :mod:`workloads.data` (synthetic, or
a ``text<TAB>label`` TSV with a vocabulary file); padding positions are masked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workloads.data.sources import SYNTHETIC, text_source
from workloads.models.common import (
    check_positive,
    classification_task,
    seeded,
    zero_init_head,
)
from workloads.workload import Task, register_workload

# --- config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    """Encoder shape; the defaults are BERT-Tiny's apart from vocabulary and positions."""

    vocab_size: int = 30522
    max_positions: int = 512
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    intermediate: int = 512
    num_classes: int = 2
    dropout: float = 0.0
    pad_id: int = 0


@dataclass(frozen=True)
class LSTMConfig:
    """LSTM classifier shape."""

    vocab_size: int = 4096
    embed_dim: int = 64
    hidden: int = 128
    num_classes: int = 2
    pad_id: int = 0


LSTM_FORGET_BIAS = 2.0

# --- blocks ---------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """Word + position + segment (all segment 0) embeddings, LayerNorm, dropout."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.words = nn.Embedding(cfg.vocab_size, cfg.hidden, padding_idx=cfg.pad_id)
        self.positions = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.segments = nn.Embedding(2, cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.words(tokens) + self.positions(positions) + self.segments.weight[0]
        return self.dropout(self.norm(x))


def trainable_by_sgd(model: BertClassifier, cfg: BertConfig) -> None:
    """... then the scales that let plain SGD (NAG at lr 0.05) train it from the first steps.

    BERT's std 0.02 everywhere suits Adam, which ignores scale; under SGD the encoder's
    tiny weights pass almost nothing from the words to the [CLS] position, and a step moves
    them little. So: encoder matrices at std 1/sqrt(fan_in) (signal keeps its scale through
    each layer), word embeddings at std 1 (words, not the 0.02 positions, dominate the
    embedding LayerNorm), the padding row at zero, and a zero classifier (loss starts at
    ln(classes); see :func:`workloads.models.common.zero_init_head`).
    """
    for p in model.encoder.parameters():
        if p.dim() == 2:
            nn.init.normal_(p, std=p.shape[1] ** -0.5)
    words = model.embeddings.words.weight
    nn.init.normal_(words, std=1.0)
    with torch.no_grad():
        words[cfg.pad_id] = 0.0
    zero_init_head(model.classifier)


# --- model ----------------------------------------------------------------------------


class BertClassifier(nn.Module):
    """BERT encoder + pooler + linear head over token ids ``[B, T]`` (``T <= max_positions``)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.pad_id = cfg.pad_id
        self.embeddings = BertEmbeddings(cfg)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden, cfg.heads, cfg.intermediate, cfg.dropout, activation="gelu",
            layer_norm_eps=1e-12, batch_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.pooler = nn.Linear(cfg.hidden, cfg.hidden)
        self.classifier = nn.Linear(cfg.hidden, cfg.num_classes)
        for m in self.modules():  # BERT's initialisation ...
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for name, p in self.encoder.named_parameters():
            if name.endswith("in_proj_bias"):
                nn.init.zeros_(p)
        trainable_by_sgd(self, cfg)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embeddings(tokens), src_key_padding_mask=tokens == self.pad_id)
        return self.classifier(torch.tanh(self.pooler(hidden[:, 0])))


class LSTMClassifier(nn.Module):
    """Embedding -> LSTM -> mean over non-padding steps -> linear, on token ids ``[B, T]``."""

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.pad_id = cfg.pad_id
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden, batch_first=True)
        self.classifier = nn.Linear(cfg.hidden, cfg.num_classes)
        # torch's LSTM init (uniform +-1/sqrt(hidden)) leaves the mean-pooled states tiny
        # (squared norm ~0.2), so an SGD step barely moves the head. Inputs at unit-variance
        # pre-activations and a forget-gate bias of 2 (gate ~0.9: the cell accumulates
        # evidence over ~10 tokens, Jozefowicz et al. 2015) give class-separated states.
        hidden = cfg.hidden
        bound = (3.0 / cfg.embed_dim) ** 0.5
        nn.init.uniform_(self.lstm.weight_ih_l0, -bound, bound)
        with torch.no_grad():
            self.lstm.bias_ih_l0[hidden : 2 * hidden] = LSTM_FORGET_BIAS
            self.lstm.bias_hh_l0[hidden : 2 * hidden] = 0.0
        zero_init_head(self.classifier)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.embedding(tokens))
        keep = (tokens != self.pad_id).unsqueeze(-1).to(states.dtype)
        pooled = (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled)


# --- registration ---------------------------------------------------------------------

TEXT_DEFAULTS = {"vocab_size": 4096, "seq_len": 64, "num_classes": 4, "data": SYNTHETIC,
                 "vocab": ""}  # fmt: skip


def text_task(
    make_model: Callable[[int], nn.Module], *, batch: int, seed: int, vocab_size: int,
    seq_len: int, num_classes: int, data: str, vocab: str, info: dict[str, Any],
) -> Task:  # fmt: skip
    """A text-classification Task; ``make_model(pad_id)`` builds the classifier."""
    for name, value in (("vocab_size", vocab_size), ("seq_len", seq_len),
                        ("num_classes", num_classes)):  # fmt: skip
        check_positive(name, value)
    source, pad_id = text_source(
        data, batch=batch, seed=seed, num_classes=num_classes, vocab_size=vocab_size,
        seq_len=seq_len, vocab=vocab,
    )  # fmt: skip
    with seeded(seed):
        model = make_model(pad_id)
    return classification_task(
        model, source, batch=batch, example=torch.full((1, seq_len), pad_id + 1),
        domain="nlp", num_classes=num_classes,
        info={**info, "vocab_size": vocab_size, "seq_len": seq_len, "data": data},
    )  # fmt: skip


@register_workload(
    "bert_tiny",
    domain="nlp",
    description="BERT-Tiny-shaped encoder (2 layers, hidden 128, 2 heads) text classifier",
    defaults={**TEXT_DEFAULTS, "dropout": 0.0},
)
def build_bert_tiny(
    batch: int, seed: int, *, vocab_size: int, seq_len: int, num_classes: int, data: str,
    vocab: str, dropout: float,
) -> Task:  # fmt: skip
    """BERT-Tiny classifier; dropout defaults to 0 (BERT uses 0.1) for reproducible steps."""
    return text_task(
        lambda pad_id: BertClassifier(BertConfig(
            vocab_size=vocab_size, max_positions=seq_len, num_classes=num_classes,
            dropout=dropout, pad_id=pad_id,
        )),
        batch=batch, seed=seed, vocab_size=vocab_size, seq_len=seq_len,
        num_classes=num_classes, data=data, vocab=vocab, info={"dropout": dropout},
    )  # fmt: skip


@register_workload(
    "lstm_text",
    domain="nlp",
    description="LSTM text classifier (embedding 64, one LSTM layer of 128, linear)",
    defaults={**TEXT_DEFAULTS, "embed_dim": 64, "hidden": 128},
)
def build_lstm_text(
    batch: int, seed: int, *, vocab_size: int, seq_len: int, num_classes: int, data: str,
    vocab: str, embed_dim: int, hidden: int,
) -> Task:  # fmt: skip
    """LSTM classifier over ``seq_len`` tokens."""
    check_positive("embed_dim", embed_dim)
    check_positive("hidden", hidden)
    return text_task(
        lambda pad_id: LSTMClassifier(LSTMConfig(
            vocab_size=vocab_size, embed_dim=embed_dim, hidden=hidden,
            num_classes=num_classes, pad_id=pad_id,
        )),
        batch=batch, seed=seed, vocab_size=vocab_size, seq_len=seq_len,
        num_classes=num_classes, data=data, vocab=vocab,
        info={"embed_dim": embed_dim, "hidden": hidden},
    )  # fmt: skip
