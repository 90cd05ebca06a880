"""The one owner of phantom seed ranges: what each seed may be used for.

Accuracy figures mean something only on phantoms the model never saw. Every cohort of v2
phantoms therefore draws its seeds from a named range here, and code that trains or evaluates
asks this module for them (:func:`seeds_for`) or checks them (:func:`require`,
:func:`check_disjoint`) instead of writing numbers of its own. The ranges are pairwise
disjoint, which is checked when the module is imported.

v2 ranges (``cacpipe.phantom.v2.random_config(seed)``):

- ``tests``      1 000 -   1 999  unit tests of this repository
- ``demo``       2 000 -   2 099  the v2 demo export (``write_demo_export(..., version=2)``)
- ``training``  10 000 -  59 999  phantoms a segmentation model may be trained or validated on
- ``heldout``  900 000 - 999 999  evaluation only: accuracy benchmark, fallback-locator report,
  every published figure. Never train on these.

v1 ranges (v1 seeds the shipped demo model and its tests use, kept here so that a v2 range can
never be laid over them): ``v1_training`` 100 - 123 (``nnunet_plans.data.phantom_cohort_configs``)
and ``v1_heldout`` 5 000 - 5 005 (``nnunet_plans.evaluate``, tests/test_segment_demo.py). The demo
model (``make demo-model``) trains on v1_training seeds and the first ``training`` seeds
(``nnunet_plans.data.v2_training_configs``); ``make accuracy`` scans ``heldout`` seeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError


class SeedOverlapError(ConfigError):
    """Seeds meant for different purposes (e.g. training and evaluation) overlap."""


@dataclass(frozen=True)
class SeedRange:
    """A half-open range ``[start, stop)`` of seeds reserved for one purpose."""

    name: str
    start: int
    stop: int
    purpose: str

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed < self.stop

    def __len__(self) -> int:
        return self.stop - self.start

    def seeds(self, n: int, offset: int = 0) -> list[int]:
        """``n`` consecutive seeds of this range starting at ``start + offset``."""
        if n < 0 or offset < 0 or self.start + offset + n > self.stop:
            raise ConfigError(f"the {self.name!r} seed range holds {len(self)} seeds ({self.start}-{self.stop - 1}); "
                              f"cannot take {n} from offset {offset}")
        return list(range(self.start + offset, self.start + offset + n))

    def overlaps(self, other: SeedRange) -> bool:
        return self.start < other.stop and other.start < self.stop


TESTS = SeedRange("tests", 1_000, 2_000, "unit tests of this repository")
DEMO = SeedRange("demo", 2_000, 2_100, "the v2 demo PACS export")
TRAINING = SeedRange("training", 10_000, 60_000, "phantoms a segmentation model may be trained or validated on")
HELDOUT = SeedRange("heldout", 900_000, 1_000_000,
                    "evaluation only (accuracy benchmark, fallback-locator report, published figures)")
V1_TRAINING = SeedRange("v1_training", 100, 124, "v1 phantoms the shipped demo model was trained on")
V1_HELDOUT = SeedRange("v1_heldout", 5_000, 5_006, "v1 phantoms the shipped demo model is evaluated on")

RANGES: dict[str, SeedRange] = {r.name: r for r in (TESTS, DEMO, TRAINING, HELDOUT, V1_TRAINING, V1_HELDOUT)}


def _check_ranges() -> None:
    rs = list(RANGES.values())
    for i, a in enumerate(rs):
        for b in rs[i + 1:]:
            if a.overlaps(b):
                raise SeedOverlapError(f"seed ranges {a.name!r} and {b.name!r} overlap")


_check_ranges()


def seed_range(purpose: str) -> SeedRange:
    """The range reserved for ``purpose`` (one of :data:`RANGES`)."""
    try:
        return RANGES[purpose]
    except KeyError:
        raise ConfigError(f"unknown seed purpose {purpose!r}; choose from {sorted(RANGES)}") from None


def seeds_for(purpose: str, n: int, offset: int = 0) -> list[int]:
    """``n`` seeds reserved for ``purpose`` (e.g. ``seeds_for("heldout", 20)``)."""
    return seed_range(purpose).seeds(n, offset)


def purpose_of(seed: int) -> str | None:
    """The name of the range holding ``seed``, or None when no range reserves it."""
    return next((r.name for r in RANGES.values() if seed in r), None)


def require(seeds: Iterable[int], purpose: str) -> list[int]:
    """Return ``seeds`` as a list; raise :class:`SeedOverlapError` when one lies outside ``purpose``'s range."""
    rng = seed_range(purpose)
    out = [int(s) for s in seeds]
    bad = [s for s in out if s not in rng]
    if bad:
        where = ", ".join(f"{s} ({purpose_of(s) or 'unreserved'})" for s in bad[:5])
        raise SeedOverlapError(f"seeds outside the {purpose!r} range {rng.start}-{rng.stop - 1}: {where}"
                               f"{' ...' if len(bad) > 5 else ''}")
    return out


def check_disjoint(**groups: Iterable[int]) -> None:
    """Raise :class:`SeedOverlapError` when any two named seed groups share a seed.

    ``check_disjoint(training=train_seeds, heldout=eval_seeds)``.
    """
    sets = {name: {int(s) for s in seeds} for name, seeds in groups.items()}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(sets[a] & sets[b])
            if common:
                raise SeedOverlapError(f"seed groups {a!r} and {b!r} share {len(common)} seed(s), e.g. {common[:5]}; "
                                       "training and evaluation phantoms must differ")
