"""Evaluation of a cohort's results against references: a research tool, not run by ``cacpipe scan``.

Modules, one job each (strict CSV reading and joining: :mod:`cacpipe.tables`, shared with `cacpipe severity fit`), ``sources`` (cohort, reference
CSV, phantom truth, label maps), ``stats`` (library-backed statistics), ``presence``,
``agreement`` (continuous), ``categories`` (reclassification), ``grades`` (grade kappa, ordinal
regression), ``lesions`` (lesion matching), ``ratings`` (rater agreement), ``run``
(orchestration and files), ``report_text`` / ``report_html``. Formats: docs/evaluation.md.
"""

from ..tables import read_csv
from .run import evaluate, write_outputs
from .sources import load_prediction, load_reference

__all__ = ["evaluate", "load_prediction", "load_reference", "read_csv", "write_outputs"]
