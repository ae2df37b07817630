"""Readers for real data in its usual on-disk formats, and endless shuffled batches of it.

- CIFAR-10 binary batches: ``data_batch_*.bin``, each record 1 label byte + 3072 pixel bytes
  (1024 red, 1024 green, 1024 blue, row-major 32x32).
- Speech Commands layout: one folder per label holding 16-bit PCM mono 16 kHz WAV files,
  decoded with the standard library's ``wave`` module and padded or trimmed to one second;
  folders whose name starts with ``_`` (``_background_noise_``) are not labels.
- Text: a TSV of ``text<TAB>label`` lines and a vocabulary file of one token per line (the
  line number is the id); words not in the vocabulary become ``[UNK]``.

Only the standard library and torch: this module travels in the agent bundle.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import torch

from workloads.data import CLIP_SAMPLES, SAMPLE_RATE_HZ

CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32


class TensorBatches:
    """An endless batch source over in-memory tensors, reshuffled each epoch from a seed.

    Batches are whole (the last partial batch of an epoch is dropped); ``transform`` maps the
    raw inputs of one batch (e.g. uint8 pixels) to what the model takes.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch: int,
        seed: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        if len(inputs) < batch:
            raise ValueError(
                f"the data set has {len(inputs)} examples, fewer than batch={batch}; "
                "use a smaller batch or more data"
            )
        self.inputs, self.targets, self.batch = inputs, targets, batch
        self.transform = transform
        self._gen = torch.Generator().manual_seed(int(seed))
        self._order = torch.empty(0, dtype=torch.long)
        self._next = 0

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._next + self.batch > len(self._order):
            self._order = torch.randperm(len(self.inputs), generator=self._gen)
            self._next = 0
        index = self._order[self._next : self._next + self.batch]
        self._next += self.batch
        inputs = self.inputs[index]
        if self.transform is not None:
            inputs = self.transform(inputs)
        return inputs, self.targets[index]


def read_cifar10(root: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 ``[N, 3, 32, 32]``) and labels (int64 ``[N]``) of every data_batch_*.bin."""
    files = sorted(Path(root).glob("data_batch_*.bin"))
    if not files:
        raise FileNotFoundError(
            f"no data_batch_*.bin in {str(root)!r}; point data at the cifar-10-batches-bin folder"
        )
    chunks = []
    for path in files:
        raw = path.read_bytes()
        if len(raw) == 0 or len(raw) % CIFAR_RECORD_BYTES:
            raise ValueError(
                f"{path} has {len(raw)} bytes, not a whole number of "
                f"{CIFAR_RECORD_BYTES}-byte CIFAR-10 records"
            )
        chunks.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    records = torch.cat(chunks).view(-1, CIFAR_RECORD_BYTES)
    labels = records[:, 0].long()
    if int(labels.max()) > 9:
        raise ValueError(f"CIFAR-10 label {int(labels.max())} is out of range 0-9 in {root}")
    return records[:, 1:].reshape(-1, 3, 32, 32).clone(), labels


def read_wav(path: str | Path, samples: int = CLIP_SAMPLES) -> torch.Tensor:
    """One 16-bit PCM mono 16 kHz WAV file as float32 in [-1, 1), zero-padded or trimmed."""
    with wave.open(str(path), "rb") as wav:
        form = (wav.getsampwidth(), wav.getnchannels(), wav.getframerate())
        if form != (2, 1, SAMPLE_RATE_HZ):
            raise ValueError(
                f"{path}: {8 * form[0]}-bit, {form[1]} channel(s), {form[2]} Hz; expected "
                f"16-bit mono {SAMPLE_RATE_HZ} Hz (convert it, e.g. sox in.wav -b 16 -c 1 "
                f"-r {SAMPLE_RATE_HZ} out.wav)"
            )
        frames = wav.readframes(samples)
    audio = torch.zeros(samples)
    if frames:
        pcm = torch.frombuffer(bytearray(frames), dtype=torch.int16).float() / 32768.0
        audio[: len(pcm)] = pcm
    return audio


def index_speech_commands(root: str | Path) -> tuple[list[Path], torch.Tensor, list[str]]:
    """WAV paths, their labels ``[N]`` and the label names (sorted folder names)."""
    base = Path(root)
    names = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_"))
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(names):
        found = sorted((base / name).glob("*.wav"))
        paths += found
        labels += [index] * len(found)
    if not paths:
        raise FileNotFoundError(
            f"no <label>/*.wav files under {str(root)!r}; expected the Speech Commands layout"
        )
    return paths, torch.tensor(labels), names


def read_wavs(paths: list[Path]) -> torch.Tensor:
    """Several clips as one ``[N, 16000]`` tensor."""
    return torch.stack([read_wav(path) for path in paths])


def read_speech_commands(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every clip in memory: waveforms ``[N, 16000]``, labels ``[N]`` and label names.

    The full data set is several GB as float32; :func:`wav_batches` reads per batch instead.
    """
    paths, labels, names = index_speech_commands(root)
    return read_wavs(paths), labels, names


def wav_batches(root: str | Path, batch: int, seed: int) -> tuple[TensorBatches, torch.Tensor]:
    """Shuffled batches of a Speech Commands folder, each decoded from disk when drawn.

    Only the file list stays in memory (so a phone can use the whole data set); decoding a
    batch is then part of the data phase. Also returns every label, for checks.
    """
    paths, labels, _ = index_speech_commands(root)

    def decode(indices: torch.Tensor) -> torch.Tensor:
        return read_wavs([paths[i] for i in indices.tolist()])

    return TensorBatches(torch.arange(len(paths)), labels, batch, seed, transform=decode), labels


def read_vocab(path: str | Path) -> dict[str, int]:
    """Token -> id from a vocabulary file of one token per line; it must contain [UNK]."""
    tokens = Path(path).read_text(encoding="utf-8").splitlines()
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token.strip(), index)
    for needed in ("[UNK]", "[PAD]"):
        if needed not in vocab:
            raise ValueError(f"vocabulary {str(path)!r} has no {needed} line; add one")
    return vocab


def encode(text: str, vocab: dict[str, int], seq_len: int) -> list[int]:
    """Whitespace tokens to ids ([CLS] first when the vocabulary has it), padded to seq_len."""
    unk = vocab["[UNK]"]
    ids = [vocab["[CLS]"]] if "[CLS]" in vocab else []
    for word in text.split():
        ids.append(vocab.get(word, vocab.get(word.lower(), unk)))
    ids = ids[:seq_len]
    return ids + [vocab["[PAD]"]] * (seq_len - len(ids))


def read_text_tsv(
    tsv: str | Path, vocab_path: str | Path, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Token ids ``[N, seq_len]``, labels ``[N]`` and label names from ``text<TAB>label`` lines.

    Labels that are all integers are used as class ids; otherwise the sorted distinct label
    strings are numbered from 0.
    """
    vocab = read_vocab(vocab_path)
    texts, raw_labels = [], []
    lines = Path(tsv).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        if not sep:
            raise ValueError(f"{tsv}:{number}: no tab in {line[:60]!r}; expected text<TAB>label")
        texts.append(text)
        raw_labels.append(label.strip())
    if not texts:
        raise ValueError(f"{str(tsv)!r} has no text<TAB>label lines")
    if all(label.isdigit() for label in raw_labels):
        ids = [int(label) for label in raw_labels]
        names = [str(i) for i in range(max(ids) + 1)]
    else:
        names = sorted(set(raw_labels))
        ids = [names.index(label) for label in raw_labels]
    tokens = torch.tensor([encode(text, vocab, seq_len) for text in texts])
    return tokens, torch.tensor(ids), names
