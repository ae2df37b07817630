"""The model zoo: importing this package registers every workload in ``WORKLOADS``.

One module per family, each in the same order (config, blocks, model, registration):
:mod:`mobilenet` (``mobilenet_v2``), :mod:`mobilenetv3` (``mobilenet_v3_small``),
:mod:`resnet` (``resnet18``), :mod:`text` (``bert_tiny``, ``lstm_text``) and
:mod:`speech` (``ds_cnn``, ``kwt1``, and the log-mel front end).
"""

from __future__ import annotations

from workloads.models import mobilenet, mobilenetv3, resnet, speech, text  # noqa: F401
