"""Published figures to put beside cacpipe's, each with its source and what it was measured on.

Only figures whose source was read are listed. They come from other data (other scans, readers,
protocols) unless ``dataset`` names the same dataset: a side-by-side view, not a head-to-head test.
``metric`` uses the benchmark's metric names (:data:`cacpipe.benchmark.metrics.METRICS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Published:
    metric: str  # e.g. "total_agatston_icc", "category_kappa_linear", "LAD_agatston_icc"
    value: float
    what: str  # what was measured, in words
    dataset: str  # the data it was measured on
    source: str  # citation
    ct: str  # "gated" | "non-gated"

    @property
    def short(self) -> str:
        """The source in a few words (first author and year, or the shared/ section)."""
        return SHORT.get(self.source, self.source[:40])

    def to_dict(self) -> dict:
        return {**asdict(self), "short": self.short}


ENG_2021 = ("Eng D, Chute C, Khandwala N, et al. Automated coronary calcium scoring using deep learning with "
            "multicenter external validation. npj Digit Med 2021;4:88 (the Stanford COCA authors)")
DE_VOS_2019 = ("de Vos BD, Wolterink JM, Leiner T, de Jong PA, Lessmann N, Isgum I. Direct automatic coronary "
               "calcium scoring in cardiac and chest CT. IEEE Trans Med Imaging 2019")
SHARED = "shared/README.md section 10 (published per-vessel figures gathered for cacpipe)"
ORCA_PROTOCOL = ("orCaScore evaluation protocol (orcascore.isi.uu.nl, Evaluation and Data pages); Wolterink JM, "
                 "Leiner T, de Vos BD, et al. An evaluation of automatic coronary artery calcium scoring methods with "
                 "cardiac CT using the orCaScore framework. Med Phys 2016;43:2361-2373")

SHORT = {ENG_2021: "Eng et al. 2021", DE_VOS_2019: "de Vos et al. 2019", SHARED: "shared/README.md s.10",
         ORCA_PROTOCOL: "orCaScore"}

PUBLISHED: tuple[Published, ...] = (
    Published("category_kappa_linear", 0.89, "risk-category agreement, automatic vs manual (Cohen's kappa), gated "
              "model; mean difference in Agatston -2.86", "Stanford gated coronary CT, 79 patients", ENG_2021, "gated"),
    Published("category_kappa_linear", 0.836, "Cohen's kappa at the Agatston > 0 cut-off, non-gated model vs paired "
              "gated reference", "Stanford internal non-gated test set (n = 42)", ENG_2021, "non-gated"),
    Published("total_agatston_icc", 0.98, "ICC of total Agatston, automatic vs manual", "Utrecht cardiac CT (903 scans)",
              DE_VOS_2019, "gated"),
    Published("category_kappa_linear", 0.95, "linearly weighted kappa of risk categories", "Utrecht cardiac CT",
              DE_VOS_2019, "gated"),
    Published("total_agatston_icc", 0.98, "ICC of total Agatston, automatic vs manual", "chest CT (1,687 scans)",
              DE_VOS_2019, "non-gated"),
    Published("category_kappa_linear", 0.93, "linearly weighted kappa of risk categories", "chest CT", DE_VOS_2019,
              "non-gated"),
    Published("total_agatston_icc", 0.992, "ICC of total Agatston, per-vessel product vs readers",
              "913 non-gated scans", SHARED, "non-gated"),
    Published("LAD_agatston_icc", 0.964, "ICC of LAD Agatston (left main reported separately: 0.863)",
              "913 non-gated scans", SHARED, "non-gated"),
    Published("LCX_agatston_icc", 0.962, "ICC of LCX Agatston", "913 non-gated scans", SHARED, "non-gated"),
    Published("RCA_agatston_icc", 0.980, "ICC of RCA Agatston", "913 non-gated scans", SHARED, "non-gated"),
    Published("LAD_category_kappa", 0.78, "per-artery category kappa (LM/LAD), vessel-specific model",
              "multicentre registry, non-gated attenuation-correction CT (n = 5,969)", SHARED, "non-gated"),
    Published("LCX_category_kappa", 0.60, "per-artery category kappa", "same registry, non-gated", SHARED, "non-gated"),
    Published("RCA_category_kappa", 0.70, "per-artery category kappa", "same registry, non-gated", SHARED, "non-gated"),
    Published("LAD_category_kappa", 0.90, "per-artery category kappa (LM/LAD)", "same registry, gated", SHARED, "gated"),
    Published("LCX_category_kappa", 0.70, "per-artery category kappa", "same registry, gated", SHARED, "gated"),
    Published("RCA_category_kappa", 0.79, "per-artery category kappa", "same registry, gated", SHARED, "gated"),
    Published("any_lesion_f1", 0.89, "lesion-detection F1, soft reconstructions (0.84 sharp)",
              "lung-screening CT (Lessmann et al., 1,744 scans)", SHARED, "non-gated"),
    Published("category_kappa_linear", 0.85, "two human readers, category kappa (0.92 on gated CT)",
              "ungated low-dose CT", SHARED, "non-gated"),
)


def published_for(dataset: str, subset: str) -> list[Published]:
    """The figures to show beside a run on ``dataset``/``subset`` (gated first for gated data)."""
    ct = "non-gated" if subset == "nongated" else "gated"
    return sorted(PUBLISHED, key=lambda p: (p.ct != ct, p.metric))


PROTOCOLS: dict[str, str] = {
    "orcascore-gated": ("orCaScore protocol: lesions are 3D 6-connected groups of voxels > 130 HU carrying one label; "
                  "lesion sensitivity and PPV by count (and volume), F1 = their harmonic mean; per-patient Agatston "
                  "and volume compared by the two-way ICC for absolute agreement; patients assigned to risk "
                  "categories (0, 1-10, 11-100, 101-400, > 400) compared by agreement and weighted kappa. cacpipe "
                  "scores lesions with its own model (HU >= 130, 3D 26-connected, a lesion found when a predicted "
                  "lesion of the same artery overlaps it): close to, not identical with, the challenge's software."),
    "coca-gated": ("COCA (gated): per-lesion contours drawn by readers, converted to calcium labels on the CT grid "
                   "(left main counted as LAD); the reference scores are cacpipe's Agatston convention applied to "
                   "those labels (HU >= 130 inside a contour), so a perfect segmentation scores them exactly."),
    "coca-nongated": ("COCA (non-gated): Agatston per vessel and in total from the dataset's spreadsheet (left main "
                      "added to LAD); presence is score > 0; only Agatston, presence and category agreement can be "
                      "compared (no contours: no volume, no lesions)."),
}
