"""Flags against a reference: per flag, in how many studies that need it it was raised, and in how
many that do not (sensitivity, false-alarm rate).

The reference is a list of expected flag codes per study: the phantom truth's ``expected_flags``
(``truth.json``, or the ``expected_flags`` column of ``truth.csv``, ";"-joined). The phantom names
some flags by what they are (``motion``, ``metal_device``, ``cabg``, ``situs_inversus``) where
cacpipe names what it suspects; :data:`EXPECTED_TO_RAISED` maps each expected code to the cacpipe
codes that satisfy it (codes absent there map to themselves). ``not_assessable`` counts only at
study level: :func:`cacpipe.quant.validity.finalise` adds an artery-level one for every artery a
segmentation missed, which is not what the truth means by it (a study too noisy to score).

Used by ``make accuracy`` (the lead's benchmark) and by the flag benchmark of issue 26
(docs/quantification.md, "Flags a reader can trust").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import flags as F

# Expected (phantom truth) code -> the cacpipe flag codes that satisfy it.
EXPECTED_TO_RAISED: dict[str, tuple[str, ...]] = {
    "motion": (F.MOTION_SUSPECTED,),
    "metal_device": (F.METAL_DEVICE,),
    "cabg": (F.CABG_SUSPECTED,),
    "situs_inversus": (F.DEXTROCARDIA_SUSPECTED,),
}
# The flags the v2 phantom truth can expect (cacpipe.phantom.v2.truth.expected_flags), report order.
TRUTH_FLAGS: tuple[str, ...] = (
    "motion", F.METAL_DEVICE, "cabg", F.STENT_SUSPECTED, F.HIGH_NOISE, F.NOT_ASSESSABLE,
    F.VALVE_CALCIUM_SUSPECTED, F.CONTRAST_SUSPECTED, F.FEW_SLICES, "situs_inversus",
)
STUDY_LEVEL_ONLY = frozenset({F.NOT_ASSESSABLE})


@dataclass(frozen=True)
class FlagScore:
    """One flag over a cohort: 2x2 counts, sensitivity and false-alarm rate (None: no such study)."""

    flag: str
    tp: int
    fn: int
    fp: int
    tn: int

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def false_alarm_rate(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None

    def to_dict(self) -> dict:
        return {**asdict(self), "sensitivity": self.sensitivity, "false_alarm_rate": self.false_alarm_rate}


def raised_codes(flags: Iterable, status: str | None = None) -> set[str]:
    """The expected-flag vocabulary a study's flags satisfy.

    ``flags``: :class:`cacpipe.flags.Flag` objects, result.json flag dicts (``code``, ``artery``) or
    bare code strings (a cohort.csv ``flags`` cell split on ";"). With bare codes the level is
    unknown, so ``not_assessable`` is taken from ``status`` instead when it is given.
    """
    codes: set[str] = set()
    for f in flags:
        if isinstance(f, str):
            code, artery = f, None
            if code in STUDY_LEVEL_ONLY and status is not None:
                continue
        elif isinstance(f, Mapping):
            code, artery = f.get("code"), f.get("artery")
        else:
            code, artery = f.code, f.artery
        if code in STUDY_LEVEL_ONLY and artery is not None:
            continue
        codes.add(str(code))
    if status == "not_assessable":
        codes.add(F.NOT_ASSESSABLE)
    out = set(codes)
    for expected, raised in EXPECTED_TO_RAISED.items():
        if codes & set(raised):
            out.add(expected)
    return out


def split_codes(cell: str | None) -> list[str]:
    """A ";"-joined code cell (cohort.csv ``flags``, truth.csv ``expected_flags``) as a list."""
    return [c.strip() for c in (cell or "").split(";") if c.strip()]


def score_flags(raised: Sequence[Iterable[str]], expected: Sequence[Iterable[str]],
                flags: Sequence[str] | None = None) -> dict[str, FlagScore]:
    """Per flag: TP/FN/FP/TN over studies, ``raised[i]`` against ``expected[i]``.

    ``raised[i]`` is what :func:`raised_codes` gives for study i (the truth's vocabulary);
    ``expected[i]`` its expected codes. ``flags`` (default :data:`TRUTH_FLAGS`) are the flags scored.
    """
    if len(raised) != len(expected):
        raise ValueError(f"{len(raised)} studies raised flags but {len(expected)} have expected flags")
    rs = [set(r) for r in raised]
    es = [set(e) for e in expected]
    out: dict[str, FlagScore] = {}
    for flag in flags or TRUTH_FLAGS:
        tp = sum(1 for r, e in zip(rs, es, strict=True) if flag in e and flag in r)
        fn = sum(1 for r, e in zip(rs, es, strict=True) if flag in e and flag not in r)
        fp = sum(1 for r, e in zip(rs, es, strict=True) if flag not in e and flag in r)
        out[flag] = FlagScore(flag, tp, fn, fp, len(rs) - tp - fn - fp)
    return out


def flag_table(scores: Mapping[str, FlagScore], target_sensitivity: float = 0.9,
               target_false_alarm: float = 0.1) -> str:
    """A plain-text table of :func:`score_flags` (one line per flag; 'meets' against the targets)."""
    def pct(v: float | None) -> str:
        return "   -" if v is None else f"{v:4.2f}"

    lines = [f"{'flag':<26} {'TP':>3} {'FN':>3} {'FP':>3} {'TN':>3}  sens  false-alarm  meets "
             f"(sens >= {target_sensitivity:g}, false alarm <= {target_false_alarm:g})"]
    for s in scores.values():
        ok = (s.sensitivity is None or s.sensitivity >= target_sensitivity) and \
             (s.false_alarm_rate is None or s.false_alarm_rate <= target_false_alarm)
        lines.append(f"{s.flag:<26} {s.tp:>3} {s.fn:>3} {s.fp:>3} {s.tn:>3}  {pct(s.sensitivity)}  "
                     f"{pct(s.false_alarm_rate):>11}  {'yes' if ok else 'NO'}")
    return "\n".join(lines)


def score_scan(scan_dir: str | Path, truth_dir: str | Path,
               flags: Sequence[str] | None = None) -> tuple[dict[str, FlagScore], list[dict]]:
    """Flags of a ``cacpipe scan`` output (``OUT/<PatientID>/<StudyUID>/result.json``) against a phantom
    cohort's truth (``TRUTH/<PatientID>/truth.json``, as ``cacpipe phantom cohort`` writes it).

    Returns the scores and one row per study (patient, expected, raised). Studies without a truth
    file are skipped; a truth without a result is not counted (the scan did not reach it).
    """
    import json

    rows: list[dict] = []
    for rj in sorted(Path(scan_dir).glob("*/*/result.json")):
        r = json.loads(rj.read_text())
        pid = (r.get("study") or {}).get("patient_id", "")
        tj = Path(truth_dir) / pid / "truth.json"
        if not tj.exists():
            continue
        expected = json.loads(tj.read_text()).get("expected_flags") or []
        rows.append({"patient_id": pid, "expected": list(expected),
                     "raised": sorted(raised_codes(r.get("flags") or [], r.get("status")))})
    return score_flags([r["raised"] for r in rows], [r["expected"] for r in rows], flags), rows
