"""``cacpipe benchmark``: the public CAC datasets (Stanford COCA, orCaScore) as distributed, scored in one command.

Modules, one job each: ``layout`` (find the cases, check the layout: exit 2 with one line),
``scores`` (the non-gated COCA spreadsheet), ``coca_xml`` (COCA contours -> voxels), ``convert``
(one case -> reference map, row and conversion report), ``metrics`` (headline figures of an
evaluation), ``published`` (published figures with sources), ``report`` (HTML, JSON, CSV), ``run``
(orchestration). Docs: docs/benchmark.md.
"""

from .layout import DATASETS, SUBSETS, Case, DatasetLayoutError, find_cases
from .run import BenchmarkSummary, run_benchmark

__all__ = ["DATASETS", "SUBSETS", "BenchmarkSummary", "Case", "DatasetLayoutError", "find_cases", "run_benchmark"]
