#!/usr/bin/env bash
# make wheel-check: cacpipe installs without the Makefile. Builds the wheel, installs it in a clean
# venv (no system site-packages; torch pinned first, the same local CPU wheel `make install` uses),
# then checks, outside the source tree:
#   1. the core alone: `cacpipe scan --help` loads no wing module, and `cacpipe demo` names the extra it needs;
#   2. with cacpipe[phantom,evaluation]: `cacpipe demo` scores the phantom export end to end.
# Usage: devtools/wheel_check.sh PYTHON WORKDIR   (the Makefile passes python3 and build/wheel-check)
set -euo pipefail
PY=${1:-python3}
WORK=$(mkdir -p "${2:-build/wheel-check}" && cd "${2:-build/wheel-check}" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$WORK/dist" "$WORK/venv" "$WORK/demo" "$WORK/home"
mkdir -p "$WORK/home"

echo "[wheel-check] building the wheel"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
WHEEL=$(ls "$WORK"/dist/cacpipe-*.whl)
echo "[wheel-check] $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"

"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q torch==2.13.0
echo "[wheel-check] installing the core only"
"$VPY" -m pip install -q -c "$REPO/constraints.txt" "$WHEEL"

# Nothing of the user's: models, caches, settings and TotalSegmentator weights in WORK/home.
export CACPIPE_MODEL_DIR="$WORK/home/models" CACPIPE_CACHE_DIR="$WORK/home/cache" \
       CACPIPE_CONFIG_DIR="$WORK/home/config" TOTALSEG_HOME_DIR="$WORK/home/totalseg"
cd "$WORK"  # outside the source tree: the installed package, not the checkout, is what runs

"$VPY" - <<'EOF'
import sys
from click.testing import CliRunner
from cacpipe.cli import cli
res = CliRunner().invoke(cli, ["scan", "--help"])
assert res.exit_code == 0, res.output
wings = ("cacpipe.phantom", "cacpipe.evaluation", "cacpipe.benchmark", "label_tools", "nnunet_plans", "devtools")
loaded = sorted(m for m in sys.modules if m.startswith(wings))
assert not loaded, f"the core loaded wing modules: {loaded}"
assert "/site-packages/cacpipe/" in sys.modules["cacpipe"].__file__, sys.modules["cacpipe"].__file__
print("[wheel-check] core only: cacpipe scan --help loads no wing module")
EOF
if "$VPY" -c "from cacpipe.extras import missing; raise SystemExit(0 if missing('phantom') else 1)"; then
  if "$WORK/venv/bin/cacpipe" demo -o "$WORK/demo" > "$WORK/demo-core.txt" 2>&1; then
    echo "[wheel-check] FAIL: cacpipe demo ran without the phantom extra"; exit 1
  fi
  grep -F "pip install 'cacpipe[phantom]'" "$WORK/demo-core.txt"
else
  echo "[wheel-check] note: the phantom extra's packages came with the core's dependencies; demo check skipped"
fi

echo "[wheel-check] installing cacpipe[phantom,evaluation]"
"$VPY" -m pip install -q -c "$REPO/constraints.txt" "${WHEEL}[phantom,evaluation]"
"$WORK/venv/bin/cacpipe" demo -o "$WORK/demo" --no-progress
test -s "$WORK/demo/results/cohort.csv"
echo "[wheel-check] OK: the wheel installs in a clean venv and runs cacpipe demo ($WORK/demo/results)"
