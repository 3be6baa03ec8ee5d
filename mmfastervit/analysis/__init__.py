"""Measurement helpers behind ``tools/benchmark.py`` and ``tools/get_flops.py``."""
