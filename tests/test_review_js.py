"""The review page's JavaScript rules agree with the Python they preview (run with Node.js when it is
installed): categories, CAC-DRS, severity grades, CSV cells (formula injection)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cacpipe.csvout import safe_cell
from cacpipe.labels import ARTERIES
from cacpipe.quant.categories import CATEGORIES, CATEGORY_UPPER, cac_drs, category
from cacpipe.quant.severity import SeverityModel
from cacpipe.review.assets import static_text

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js not installed")


def _run(js: str):
    code = static_text("common.js") + static_text("calcium.js") + "\nconsole.log(JSON.stringify((() => {" + js + "})()));"
    out = subprocess.run([NODE, "-e", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_categories_cac_drs_and_grades_match_python():
    scores = [0, 0.4, 10, 10.01, 99.9, 100, 100.5, 299.99, 300, 400, 400.01, 2500]
    vessels = [[s, 0, 0] for s in scores] + [[s / 3, s / 3, s / 3] for s in scores]
    rules = {"categories": list(CATEGORIES), "category_upper": list(CATEGORY_UPPER)}
    model = SeverityModel.load_default()
    params = {a: {"levels": m.levels, "coef": m.coef, "cutpoints": m.cutpoints} for a, m in model.arteries.items()}
    volumes = [0, 0.001, 0.01, 0.03, 0.08, 0.2, 1.5]
    got = _run(f"""
      const R = {json.dumps(rules)}, P = {json.dumps(params)};
      return {{cat: {json.dumps(scores)}.map((s) => CacCalcium.category(s, R)),
               drs: {json.dumps(vessels)}.map((v) => CacCalcium.cacDrs(v[0] + v[1] + v[2], v)),
               grade: {json.dumps(list(ARTERIES))}.map((a) => {json.dumps(volumes)}.map((v) => CacCalcium.grade(P[a], v)))}};""")
    assert got["cat"] == [category(s) for s in scores]
    assert got["drs"] == [cac_drs(sum(v), v) for v in vessels]
    assert got["grade"] == [[model.predict(a, v)[0] for v in volumes] for a in ARTERIES]


def test_csv_cells_are_neutralised_like_csvout():
    cells = ["=1+1", "+SUM(A1)", "-2", "-x", "@cmd", "\tx", "\rx", "plain", "12", "-1.5e3", 'a "quoted", cell', "1e5"]
    got = _run(f"return {json.dumps(cells)}.map(Cac.safeCell);")
    assert got == [safe_cell(c) for c in cells]
