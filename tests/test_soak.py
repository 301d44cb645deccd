"""The soak script at a small size: kill -9, concurrent resumes, eight runs at once and
signals, through the CLI over the faulty fake server, and no run is lost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_soak_loses_no_run():
    soak = subprocess.run(
        [sys.executable, "tools/soak/run.py", "--kills", "3", "--no-postgres", "--jitter-ms", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert soak.returncode == 0, soak.stdout + soak.stderr
    header, *lines = [re.split(r"\s{2,}", line) for line in soak.stdout.splitlines() if "  " in line]
    rows = {line[0]: dict(zip(header, line, strict=True)) for line in lines}
    assert rows["kill -9 (sqlite)"]["kills"] == "3", soak.stdout
    assert [row["lost"] for row in rows.values()] == ["0", "0", "0"], soak.stdout
