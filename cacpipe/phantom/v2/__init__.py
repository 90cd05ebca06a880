"""Phantom v2: varied anatomy, realistic calcium, confounders, scanner model, full truth.

``random_config(seed, preset)`` draws a :class:`ChestConfig`; ``generate(config)`` builds the
:class:`ChestPhantom` (CT, six-class labels, heart mask, lesion-id map, truth dict). Seeds and
what they may be used for: :mod:`cacpipe.phantom.seeds`. Model and sources: docs/phantom.md.
"""

from .config import Acquisition, ChestConfig, Findings, Habitus, HeartSpec, PlaqueSpec, StentSpec
from .generate import ChestPhantom, generate
from .sampling import PRESETS, random_config

__all__ = ["Acquisition", "ChestConfig", "ChestPhantom", "Findings", "Habitus", "HeartSpec", "PlaqueSpec",
           "PRESETS", "StentSpec", "generate", "random_config"]
