"""Benchmarks (``make bench``): per-stage time and peak memory. See runner.py."""
