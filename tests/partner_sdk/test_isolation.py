"""The SDK ships on its own: importing it loads nothing of the platform's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_sdk_loads_neither_app_nor_ledger():
    code = ("import sys, partner_sdk, partner_sdk.cli, partner_sdk.webhooks;"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('app', 'ledger', 'flask', 'sqlalchemy', 'click')];"
            "sys.exit(bool(bad) and print(bad) or 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_package_ships_its_type_hints():
    assert (ROOT / "partner_sdk" / "py.typed").is_file()
    setup = (ROOT / "setup.cfg").read_text()
    assert "partner_sdk = py.typed" in setup
