"""Synthetic generators are seeded and learnable; loaders read the real on-disk formats."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest
import torch

import workloads.models  # noqa: F401  (fills the registry)
from workloads.data import CLS_ID, PAD_ID
from workloads.data.loaders import (
    TensorBatches,
    read_cifar10,
    read_speech_commands,
    read_text_tsv,
    read_vocab,
    read_wav,
)
from workloads.data.sources import image_source, text_source
from workloads.data.synthetic import SyntheticImages, SyntheticSpeech, SyntheticText
from workloads.workload import WORKLOADS

torch.set_num_threads(1)

GENERATORS = {
    "image": lambda seed: SyntheticImages(4, seed, num_classes=10, resolution=16),
    "text": lambda seed: SyntheticText(4, seed, num_classes=4, vocab_size=100, seq_len=12),
    "speech": lambda seed: SyntheticSpeech(4, seed, num_classes=12),
}


# --- synthetic ---------------------------------------------------------------------------


@pytest.mark.parametrize("domain", GENERATORS)
def test_the_same_seed_gives_the_same_batches(domain):
    a, b = GENERATORS[domain](3), GENERATORS[domain](3)
    for _ in range(3):
        (xa, ya), (xb, yb) = a(), b()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("domain", GENERATORS)
def test_another_seed_gives_other_batches(domain):
    (xa, _), (xb, _) = GENERATORS[domain](3)(), GENERATORS[domain](4)()
    assert not torch.equal(xa, xb)


@pytest.mark.parametrize("domain", GENERATORS)
def test_generating_leaves_the_global_rng_alone(domain):
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    GENERATORS[domain](0)()
    assert torch.equal(torch.rand(2), expected)


def test_synthetic_images_are_nchw_float_with_labels_in_range():
    images, labels = GENERATORS["image"](0)()
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and 0 <= int(labels.min()) <= int(labels.max()) < 10


def test_synthetic_images_sit_closer_to_their_own_class_template():
    source = SyntheticImages(64, 0, num_classes=10, resolution=16)
    images, labels = source()
    distance = torch.cdist(images.flatten(1), source.templates(torch.arange(10)).flatten(1))
    assert (distance.argmin(dim=1) == labels).float().mean() > 0.9


def test_synthetic_images_keep_no_full_resolution_template_per_class():
    # 1000 classes at 224 px would be 600 MB of templates inside the measured process
    source = SyntheticImages(2, 0, num_classes=1000, resolution=224)
    held = sum(t.numel() for t in vars(source).values() if isinstance(t, torch.Tensor))
    assert held < 1000 * 3 * 20  # the 4x4 patterns, colours and spreads
    images, _ = source()
    assert images.shape == (2, 3, 224, 224)


@pytest.mark.parametrize("resolution", [4, 17, 64])
def test_each_patterns_spread_is_the_std_of_its_upsampled_image(resolution):
    # found without upsampling any class: it must equal what upsampling every class gives
    source = SyntheticImages(2, 3, num_classes=40, resolution=resolution)
    upsampled = source._upsample(source._coarse).std(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(source._spread, upsampled, rtol=1e-5, atol=0)


def test_synthetic_images_are_normalised_to_about_mean_0_and_std_1():
    images, _ = SyntheticImages(256, 0, num_classes=10, resolution=16)()
    assert abs(float(images.mean())) < 0.2
    assert 0.8 < float(images.std()) < 1.2


def test_synthetic_text_starts_with_cls_and_never_uses_pad_or_unk():
    tokens, _ = GENERATORS["text"](0)()
    assert tokens.shape == (4, 12) and tokens.dtype == torch.int64
    assert (tokens[:, 0] == CLS_ID).all()
    assert int(tokens[:, 1:].min()) > CLS_ID and int(tokens.max()) < 100


def test_synthetic_text_carries_its_class_keywords():
    source = SyntheticText(32, 0, num_classes=4, vocab_size=1000, seq_len=64)
    tokens, labels = source()
    own = torch.isin(tokens, source.keywords[labels[0]])[0].float().mean()
    assert own > 0.2  # about the signal fraction (0.3); chance would be 8/997


def test_synthetic_text_refuses_a_vocabulary_too_small_for_the_keywords():
    with pytest.raises(ValueError, match="vocab_size=20 .* use vocab_size >= 35"):
        SyntheticText(2, 0, num_classes=4, vocab_size=20, seq_len=8)


def test_synthetic_speech_classes_own_distinct_pitches():
    source = SyntheticSpeech(4, 0, num_classes=12)
    gaps = source.pitch_hz.sort().values.diff()
    assert float(gaps.min()) > 0.05 * float(source.pitch_hz.min())


def test_synthetic_speech_is_one_second_of_bounded_audio_per_example():
    waves, labels = GENERATORS["speech"](0)()
    assert waves.shape == (4, 16000) and waves.dtype == torch.float32
    assert float(waves.abs().max()) < 1.5
    assert 0 <= int(labels.min()) and int(labels.max()) < 12


# --- batches over tensors ----------------------------------------------------------------


def test_tensor_batches_visit_every_example_once_per_epoch():
    source = TensorBatches(torch.arange(12), torch.arange(12), batch=4, seed=0)
    seen = torch.cat([source()[0] for _ in range(3)])
    assert sorted(seen.tolist()) == list(range(12))


def test_tensor_batches_refuse_fewer_examples_than_a_batch():
    with pytest.raises(ValueError, match="3 examples, fewer than batch=4"):
        TensorBatches(torch.zeros(3), torch.zeros(3), batch=4, seed=0)


# --- CIFAR-10 binary batches -------------------------------------------------------------


def write_cifar_batch(path: Path, labels: list[int]) -> None:
    """Records as in the real files: label byte, then red, green, blue planes of 32x32."""
    with path.open("wb") as out:
        for index, label in enumerate(labels):
            out.write(bytes([label]))
            for channel in range(3):
                out.write(bytes([(index * 10 + channel) % 256]) * 1024)


def test_cifar10_records_become_labelled_channel_planes(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1.bin", [3, 7])
    write_cifar_batch(tmp_path / "data_batch_2.bin", [9])
    images, labels = read_cifar10(tmp_path)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [3, 7, 9]
    assert images[1, 2].unique().tolist() == [12]  # record 1, blue plane


def test_a_truncated_cifar10_file_is_refused(tmp_path):
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        read_cifar10(tmp_path)


def test_a_folder_without_cifar10_batches_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data_batch_"):
        read_cifar10(tmp_path)


def test_cifar10_images_are_normalised_and_resized_to_the_resolution(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1.bin", [0, 1, 2, 3])
    images, labels = image_source(str(tmp_path), batch=2, seed=0, num_classes=10, resolution=16)()
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.float32
    assert float(images.max()) < 0  # dark pixels sit below the CIFAR mean


def test_real_data_with_more_labels_than_classes_is_refused(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1.bin", [0, 9])
    with pytest.raises(ValueError, match="set num_classes=10"):
        image_source(str(tmp_path), batch=2, seed=0, num_classes=4, resolution=32)


# --- Speech Commands WAV folders ---------------------------------------------------------


def write_wav(path: Path, samples: list[int], rate: int = 16000, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def test_speech_commands_folders_become_labelled_one_second_clips(tmp_path):
    write_wav(tmp_path / "yes" / "a.wav", [16384] * 8000)  # half a second: padded
    write_wav(tmp_path / "no" / "b.wav", [-16384] * 20000)  # longer: trimmed
    write_wav(tmp_path / "_background_noise_" / "noise.wav", [1] * 16000)
    waves, labels, names = read_speech_commands(tmp_path)
    assert names == ["no", "yes"]
    assert waves.shape == (2, 16000) and labels.tolist() == [0, 1]
    assert float(waves[0, -1]) == -0.5
    assert float(waves[1, 7999]) == 0.5 and float(waves[1, 8000]) == 0.0


@pytest.mark.parametrize("rate,channels", [(8000, 1), (16000, 2)])
def test_a_wav_that_is_not_16_bit_mono_16k_is_refused_with_a_fix(tmp_path, rate, channels):
    write_wav(tmp_path / "x.wav", [0] * 100, rate=rate, channels=channels)
    with pytest.raises(ValueError, match="expected 16-bit mono 16000 Hz"):
        read_wav(tmp_path / "x.wav")


# --- text TSV and vocabulary -------------------------------------------------------------


def write_text_data(tmp_path: Path) -> Path:
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\ngood\nbad\nfilm\n")
    tsv = tmp_path / "train.tsv"
    tsv.write_text("good film\tpos\nbad bad film\tneg\nGood plot\tpos\n")
    return tsv


def test_text_tsv_becomes_padded_token_ids_with_unknown_words_as_unk(tmp_path):
    tsv = write_text_data(tmp_path)
    tokens, labels, names = read_text_tsv(tsv, tmp_path / "vocab.txt", seq_len=5)
    assert names == ["neg", "pos"] and labels.tolist() == [1, 0, 1]
    assert tokens.tolist() == [[2, 3, 5, 0, 0], [2, 4, 4, 5, 0], [2, 3, 1, 0, 0]]


def test_integer_labels_are_used_as_class_ids(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tmp_path / "t.tsv").write_text("a\t2\nb\t0\n")
    _, labels, names = read_text_tsv(tmp_path / "t.tsv", tmp_path / "vocab.txt", seq_len=4)
    assert labels.tolist() == [2, 0] and names == ["0", "1", "2"]


def test_a_vocabulary_without_unk_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\nhello\n")
    with pytest.raises(ValueError, match=r"no \[UNK\] line"):
        read_vocab(tmp_path / "vocab.txt")


def test_a_tsv_line_without_a_tab_is_refused_with_its_line_number(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tmp_path / "t.tsv").write_text("fine\t1\nno tab here\n")
    with pytest.raises(ValueError, match=r"t.tsv:2: no tab"):
        read_text_tsv(tmp_path / "t.tsv", tmp_path / "vocab.txt", seq_len=4)


def test_text_source_finds_vocab_txt_beside_the_tsv_and_reports_the_pad_id(tmp_path):
    tsv = write_text_data(tmp_path)
    source, pad_id = text_source(str(tsv), batch=2, seed=0, num_classes=2, vocab_size=6, seq_len=5)
    tokens, _ = source()
    assert pad_id == PAD_ID and tokens.shape == (2, 5)


def test_a_vocabulary_larger_than_vocab_size_is_refused(tmp_path):
    tsv = write_text_data(tmp_path)
    with pytest.raises(ValueError, match="set vocab_size=6"):
        text_source(str(tsv), batch=2, seed=0, num_classes=2, vocab_size=4, seq_len=5)


# --- workloads on real data --------------------------------------------------------------


def test_a_missing_data_path_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'synthetic' nor an existing path"):
        WORKLOADS.get("resnet18").make(2, 0, {"data": str(tmp_path / "nope")})


def test_an_image_workload_trains_on_cifar10_files(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1.bin", [0, 1, 2, 3])
    task = WORKLOADS.get("resnet18").make(2, 0, {"data": str(tmp_path), "width": 0.25})
    images, labels = task.next_batch()
    task.loss_fn(task.model(images), labels).backward()
    assert images.shape == (2, 3, 32, 32)


def test_a_speech_workload_trains_on_a_wav_folder(tmp_path):
    for word in ("yes", "no"):
        write_wav(tmp_path / word / "a.wav", [100] * 16000)
    task = WORKLOADS.get("ds_cnn").make(2, 0, {"data": str(tmp_path)})
    waves, labels = task.next_batch()
    task.loss_fn(task.model(task.frontend(waves)), labels).backward()
    assert waves.shape == (2, 16000)


def test_a_text_workload_trains_on_a_tsv(tmp_path):
    tsv = write_text_data(tmp_path)
    options = {"data": str(tsv), "vocab_size": 6, "seq_len": 5, "num_classes": 2}
    task = WORKLOADS.get("bert_tiny").make(2, 0, options)
    tokens, labels = task.next_batch()
    task.loss_fn(task.model(tokens), labels).backward()
    assert tokens.shape == (2, 5)
