"""Dependencies point one way: app.api -> app.clearing -> ledger; ledger imports neither
flask nor app; app.clearing imports no web framework; partner_sdk imports neither app nor
ledger."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("ledger", {"flask", "app", "werkzeug", "marshmallow", "partner_sdk"}),
    ("partner_sdk", {"app", "ledger", "flask", "sqlalchemy"}),
    ("app/clearing", {"flask", "werkzeug"}),
])
def test_no_import_against_the_flow(package, forbidden):
    assert not _imports(package) & forbidden


def test_importing_the_ledger_loads_no_web_framework():
    code = ("import sys, ledger, ledger.verify, ledger.seal, ledger.unit_of_work;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'app', 'werkzeug')];"
            "sys.exit(bool(bad) and print(bad) or 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
