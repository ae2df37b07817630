"""Seeded, learnable synthetic batches for each domain, generated with torch on the device.

Each generator draws a fixed random *teacher* from its seed (class templates, class
keywords, class calls) and then samples labelled examples around it, so a few dozen
training steps visibly lower the loss, and the same seed always gives the same batches.
Everything comes from one ``torch.Generator`` per source; the global RNG is never touched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workloads.data import CLIP_SAMPLES, CLS_ID, SAMPLE_RATE_HZ, hz_to_mel, mel_to_hz

_FIRST_WORD_ID = 3  # after [PAD], [UNK], [CLS]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class SyntheticImages:
    """Class-conditional colour templates plus white noise, NCHW float32, about unit variance.

    The teacher is, per class, a low-frequency random pattern (4x4 noise upsampled to the
    resolution, unit variance) on a random flat colour (unit variance per channel); an image
    is its class's template plus Gaussian noise of standard deviation ``noise``, all divided
    by the expected standard deviation so that inputs have mean about 0 and std about 1
    (as normalised real images do). The flat colour is what a convolutional net that
    averages over space picks up within a few steps; the pattern needs spatial features.

    Only the 4x4 patterns and the colours are kept: a batch's templates are upsampled when it
    is drawn. Keeping every full-resolution template would hold ``num_classes × 3 × res²``
    floats in the process being measured (600 MB at 1000 classes and 224 px, the published
    image size), on a phone as much as the model.
    """

    def __init__(
        self, batch: int, seed: int, *, num_classes: int, resolution: int, noise: float = 0.5
    ) -> None:
        self.batch, self.num_classes, self.resolution = batch, num_classes, resolution
        gen = _generator(seed)
        self._coarse = torch.randn(num_classes, 3, 4, 4, generator=gen)
        self._colour = torch.randn(num_classes, 3, 1, 1, generator=gen)
        self._spread = self._pattern_spread(self._coarse)
        self._scale = math.sqrt(2.0 + noise**2)  # pattern and colour 1 each, noise noise**2
        self.noise = noise / self._scale
        self._gen = gen

    def _upsample(self, coarse: torch.Tensor) -> torch.Tensor:
        return F.interpolate(coarse, size=(self.resolution, self.resolution), mode="bilinear")

    def _pattern_spread(self, coarse: torch.Tensor) -> torch.Tensor:
        """Each class's upsampled pattern's standard deviation over its ``3 × res²`` values,
        ``[classes, 1, 1, 1]``, without upsampling a single class.

        Upsampling is linear, ``u = U c`` per channel with ``U`` of shape ``[res², 16]``, so
        the sum is ``wᵀ c`` (``w = Uᵀ 1``) and the sum of squares ``cᵀ G c`` (``G = Uᵀ U``):
        16 basis images are upsampled instead of every class (at 1000 classes and 224 px,
        the published image size, 150 M values at every process start).
        """
        basis = self._upsample(torch.eye(16, dtype=torch.float64).view(16, 1, 4, 4))
        u = basis.view(16, -1)  # Uᵀ: each coarse cell's footprint on the full image
        w, gram = u.sum(dim=1), u @ u.T
        c = coarse.to(torch.float64).reshape(len(coarse), 3, 16)
        n = 3 * self.resolution**2
        total = (c @ w).sum(dim=1)
        squares = torch.einsum("kci,ij,kcj->k", c, gram, c)
        variance = (squares - total**2 / n) / (n - 1)  # torch.std's unbiased estimate
        return variance.clamp_min(0).sqrt().to(coarse.dtype).view(-1, 1, 1, 1)

    def templates(self, labels: torch.Tensor) -> torch.Tensor:
        """The class templates of ``labels`` (unit-variance pattern plus colour, scaled)."""
        pattern = self._upsample(self._coarse[labels]) / self._spread[labels]
        return (pattern + self._colour[labels]) / self._scale

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(self.num_classes, (self.batch,), generator=self._gen)
        shape = (self.batch, 3, self.resolution, self.resolution)
        noise = torch.randn(shape, generator=self._gen)
        return self.templates(labels) + self.noise * noise, labels


class SyntheticText:
    """Token sequences whose class shows in which words occur, int64 ``[batch, seq_len]``.

    Every class owns ``keywords`` word ids (disjoint between classes); a sequence is
    ``[CLS]`` followed by uniformly random words, a ``signal`` fraction of which are replaced
    by keywords of its class. Ids 0, 1, 2 are [PAD], [UNK], [CLS] and never appear as words.
    """

    def __init__(
        self,
        batch: int,
        seed: int,
        *,
        num_classes: int,
        vocab_size: int,
        seq_len: int,
        keywords: int = 8,
        signal: float = 0.3,
    ) -> None:
        words = vocab_size - _FIRST_WORD_ID
        if words < num_classes * keywords:
            raise ValueError(
                f"vocab_size={vocab_size} is too small for {num_classes} classes with "
                f"{keywords} keywords each; use vocab_size >= "
                f"{num_classes * keywords + _FIRST_WORD_ID}"
            )
        self.batch, self.num_classes, self.seq_len = batch, num_classes, seq_len
        self.vocab_size, self.signal = vocab_size, signal
        gen = _generator(seed)
        chosen = torch.randperm(words, generator=gen)[: num_classes * keywords]
        self.keywords = (chosen + _FIRST_WORD_ID).view(num_classes, keywords)
        self._gen = gen

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen, shape = self._gen, (self.batch, self.seq_len)
        labels = torch.randint(self.num_classes, (self.batch,), generator=gen)
        tokens = torch.randint(_FIRST_WORD_ID, self.vocab_size, shape, generator=gen)
        pick = torch.randint(self.keywords.shape[1], shape, generator=gen)
        keyword = self.keywords[labels.unsqueeze(1), pick]
        tokens = torch.where(torch.rand(shape, generator=gen) < self.signal, keyword, tokens)
        tokens[:, 0] = CLS_ID
        return tokens, labels


class SyntheticSpeech:
    """One second of 16 kHz audio per example: a class-specific harmonic call in noise, ``[batch, 16000]``.

    Each class owns a pitch (the classes' pitches are mel-evenly spaced between 250 Hz and
    2.5 kHz, shuffled by the seed), a glide (-1 to +1 octave over the call) and a pulse rate
    (steady, or 8-20 pulses a second); a call has three harmonics (1, 1/2, 1/3). An example
    is its class's call with a few percent of pitch jitter, a random phase, onset
    (0-0.3 s), duration (0.5-0.7 s) and gain, under a raised-sine envelope, plus white noise.
    In a log-mel spectrogram the classes differ in where the lines lie (which a transformer
    over frames sees), and in their slope, harmonic spacing and pulsing, which a
    convolutional net that averages over time and frequency sees too, as words differ in
    spectro-temporal pattern.
    """

    def __init__(self, batch: int, seed: int, *, num_classes: int, noise: float = 0.02) -> None:
        self.batch, self.num_classes, self.noise = batch, num_classes, noise
        gen = _generator(seed)
        low, high = hz_to_mel(torch.tensor(250.0)), hz_to_mel(torch.tensor(2500.0))
        slots = (torch.randperm(num_classes, generator=gen).float() + 0.5) / num_classes
        self.pitch_hz = mel_to_hz(low + (high - low) * slots)
        self.glide_octaves = 2.0 * torch.rand(num_classes, generator=gen) - 1.0
        rates = 8.0 + 12.0 * torch.rand(num_classes, generator=gen)
        self.pulse_hz = torch.where(torch.rand(num_classes, generator=gen) < 0.3, 0.0, rates)
        self.time_s = torch.arange(CLIP_SAMPLES, dtype=torch.float32) / SAMPLE_RATE_HZ
        self._gen = gen

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen, n = self._gen, self.batch
        labels = torch.randint(self.num_classes, (n,), generator=gen)
        f0 = (self.pitch_hz[labels] * (1.0 + 0.03 * torch.randn(n, generator=gen))).unsqueeze(1)
        glide = self.glide_octaves[labels].unsqueeze(1)
        onset = 0.3 * torch.rand(n, 1, generator=gen)
        duration = 0.5 + 0.2 * torch.rand(n, 1, generator=gen)
        gain = 0.3 + 0.5 * torch.rand(n, 1, generator=gen)
        phase0 = 2 * math.pi * torch.rand(n, 1, generator=gen)
        local = self.time_s.unsqueeze(0) - onset
        inside = (local >= 0) & (local < duration)
        # f(t) = f0 2^(glide t / duration); its phase is the integral of 2 pi f
        rate = glide * math.log(2.0) / duration
        safe = torch.where(rate.abs() < 1e-6, torch.full_like(rate, 1e-6), rate)
        phase = phase0 + 2 * math.pi * f0 * torch.expm1(safe * local) / safe
        call = sum(torch.sin(k * phase) / k for k in (1, 2, 3))
        pulse_hz = self.pulse_hz[labels].unsqueeze(1)
        pulses = torch.where(pulse_hz > 0, torch.cos(math.pi * pulse_hz * local).square(), 1.0)
        envelope = torch.sin(math.pi * local / duration).pow(2) * inside * pulses
        noise = self.noise * torch.randn(n, CLIP_SAMPLES, generator=gen)
        return gain * envelope * call + noise, labels
