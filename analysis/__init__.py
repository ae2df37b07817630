"""The one place where statistics and verdicts are computed.

``harness`` (gate, calibrate, ab, study) and ``reports`` both import this package, so a
report and a gate can never reach different verdicts on the same samples. It imports only
numpy, pandas and scipy: never ``harness``, ``reports`` or ``workloads``.
"""
