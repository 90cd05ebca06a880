"""Vendor the NiiVue bundle for the review pages (run by `make viewer` after `npm ci`).

    python devtools/viewer/install.py build/viewer/node_modules cacpipe/review/static/vendor

Copies @niivue/niivue's UMD bundle (one file, its dependencies included) to VENDOR/niivue.umd.js
with NiiVue's license and the bundled packages' licenses in a leading comment, and writes
VENDOR/niivue.json ({version, license, packages}) that cacpipe.review.assets reads. Standard
library only: it runs before (or without) the project's virtual environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(node_modules: str, vendor: str) -> None:
    nm, out = Path(node_modules), Path(vendor)
    pkg = json.loads((nm / "@niivue" / "niivue" / "package.json").read_text())
    bundle = (nm / "@niivue" / "niivue" / "dist" / "niivue.umd.js").read_text(encoding="utf-8")
    packages = {}
    dirs = [d for top in sorted(nm.iterdir()) for d in (sorted(top.iterdir()) if top.name.startswith("@") else [top])]
    for d in dirs:
        try:
            meta = json.loads((d / "package.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("name") and meta.get("version"):
            packages[meta["name"]] = f"{meta['version']} ({meta.get('license', 'see package')})"
    licence = (HERE / "NIIVUE_LICENSE").read_text()
    head = (f"/*! NiiVue {pkg['version']} ({pkg.get('license')}), bundled into cacpipe review pages.\n"
            + licence.replace("*/", "* /")
            + "Installed with it (licences): " + ", ".join(f"{k} {v}" for k, v in packages.items()) + "\n*/\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "niivue.umd.js").write_text(head + bundle, encoding="utf-8")
    (out / "niivue.json").write_text(json.dumps({"version": pkg["version"], "license": pkg.get("license"),
                                                 "packages": packages}, indent=1) + "\n")
    print(f"NiiVue {pkg['version']} vendored to {out} ({len(bundle) / 1e6:.1f} MB)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
