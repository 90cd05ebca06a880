"""The core runs without the wings: `cacpipe scan` loads no wing module, and a wing command names its extra."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from cacpipe import extras
from cacpipe.cli import WING_COMMANDS, cli

WINGS = ("cacpipe.phantom", "cacpipe.evaluation", "cacpipe.benchmark", "label_tools", "nnunet_plans", "devtools")

_CHILD = """
import json, sys
from click.testing import CliRunner
from cacpipe.cli import cli
res = CliRunner().invoke(cli, {args!r})
print(json.dumps({{"exit": res.exit_code, "output": res.output,
                  "modules": sorted(m for m in sys.modules if m.startswith({wings!r}))}}))
"""


def _loaded_by(*args: str) -> dict:
    """Run ``cacpipe ARGS`` in a fresh interpreter; its exit code, output and the wing modules it loaded."""
    code = _CHILD.format(args=list(args), wings=WINGS)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scan_and_the_core_commands_load_no_wing():
    for args in (["scan", "--help"], ["--help"], ["settings", "--help"], ["review", "--help"]):
        got = _loaded_by(*args)
        assert got["exit"] == 0, got["output"]
        assert got["modules"] == [], (args, got["modules"])


def test_a_wing_command_loads_its_wing_only_when_run():
    got = _loaded_by("phantom", "--help")
    assert got["exit"] == 0, got["output"]
    assert "cacpipe.phantom.command" in got["modules"]
    assert not any(m.startswith(("nnunet_plans", "devtools", "cacpipe.benchmark")) for m in got["modules"])


def test_every_extra_is_declared_and_installed_here():
    """make install installs every extra; the metadata names each extra's distributions."""
    assert "isal" in extras.requirements("phantom")
    assert "matplotlib" in extras.requirements("evaluation")
    for extra in extras.EXTRAS:
        assert extras.missing(extra) == [], extra
    assert {e for _, _, needs, _ in WING_COMMANDS.values() for e in needs} <= set(extras.EXTRAS)


def test_the_help_lines_of_the_wing_commands_are_their_own():
    import importlib

    for name, (module, attr, _, line) in WING_COMMANDS.items():
        assert getattr(importlib.import_module(module), attr).get_short_help_str(500) == line, name


def test_demo_names_the_extra_it_needs_when_missing(monkeypatch, tmp_path):
    assert CliRunner().invoke(cli, ["demo", "--help"]).exit_code == 0  # loaded once (as other tests do) ...
    real = extras._installed
    monkeypatch.setattr(extras, "_installed", lambda name: name != "isal" and real(name))
    res = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "demo")])  # ... the extra is checked again
    assert res.exit_code == 2
    assert "cacpipe demo needs the phantom extra (not installed: isal): pip install 'cacpipe[phantom]'" in res.output
    assert not (tmp_path / "demo").exists()  # nothing started
    listing = CliRunner().invoke(cli, ["--help"]).output
    assert "needs cacpipe[phantom]" in listing
