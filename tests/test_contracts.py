"""The import contracts (pyproject.toml [tool.importlinter], docs/ARCHITECTURE.md) hold, and fail on a violation.

lint-imports runs on the repository itself, then on a copy of the packages into which a test
writes one deliberate violation per contract kind: a stage importing the batch runner (layers)
and the scan importing a wing (forbidden).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cacpipe", "label_tools", "nnunet_plans", "devtools")
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter not installed (make install)")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The four packages and pyproject.toml copied (source only) to a fresh folder."""
    root = tmp_path_factory.mktemp("contracts")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns(
            "__pycache__", "data", "static", "node_modules", "*.zip"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_repository_keeps_every_contract():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_copy_keeps_them_too(copy):
    """The copy is what the violation tests below change: clean, it passes (so a failure there is the violation)."""
    proc = _lint(copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("module, line, contract", [
    ("cacpipe/quant/_violation.py", "from cacpipe.scan import layout\n", "core layers"),
    ("cacpipe/record.py", "from cacpipe import pipeline  # noqa\n", "core layers"),
    ("cacpipe/scan/_violation.py", "def f():\n    import cacpipe.phantom  # even inside a function\n",
     "the core never imports a wing"),
    ("cacpipe/pipeline.py", "import devtools.standin  # noqa\n", "only tests import the developer tools"),
    ("cacpipe/phantom/_violation.py", "from cacpipe.evaluation import sources\n", "wings:"),
], ids=["stage-imports-scan", "record-imports-pipeline", "core-imports-wing", "core-imports-devtools",
        "phantom-imports-evaluation"])
def test_a_deliberate_violation_fails(copy, module, line, contract):
    bad = copy / module
    before = bad.read_text() if bad.exists() else None  # an existing module gets the line appended
    bad.write_text((before or "") + line)
    try:
        proc = _lint(copy)
    finally:
        bad.write_text(before) if before is not None else bad.unlink()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    broken = [s for s in proc.stdout.splitlines() if " BROKEN" in s]  # "BROKEN" or "BROKEN (1 ignored import)"
    assert any(s.startswith(contract) for s in broken), proc.stdout
    dotted = module.removesuffix(".py").replace("/", ".")
    assert dotted in proc.stdout  # the report names the offending module
