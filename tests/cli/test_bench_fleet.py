"""scripts/bench-fleet run small: it generates its fleets, runs both trees and prints one row per size and figure.
Timings are not asserted, only the shape of what is printed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(
    r"^ *(\d+)  (parse|fleetctl hosts|fleetctl check --inventory) +(-|\d+\.\d{3} s) +(\d+\.\d{3}) s +(-|\d+\.\dx)  (.*)$"
)


def bench(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-fleet"), "--repeat", "1", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def rows(lines: list[str]) -> list[tuple[str, ...]]:
    matched = [ROW.match(line) for line in lines[2:]]
    assert all(matched), lines
    return [m.groups() for m in matched if m]


def test_bench_fleet_against_a_baseline_prints_both_figures_and_the_ratio():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout for the baseline")
    lines = bench("--sizes", "30", "--baseline", "HEAD")
    assert re.match(r"^bench-fleet: best of 1; baseline [0-9a-f]{7,}; new = this checkout", lines[0])
    found = rows(lines)
    assert [(r[0], r[1]) for r in found] == [
        ("30", "parse"),
        ("30", "fleetctl hosts"),
        ("30", "fleetctl check --inventory"),
    ]
    assert all(r[2] != "-" and r[4] != "-" and r[5] == "" for r in found)


def test_bench_fleet_without_a_baseline_prints_the_new_figures_for_each_size():
    lines = bench("--sizes", "10,40", "--baseline", "none", "--clock", "cpu")
    assert lines[0].startswith("bench-fleet: best of 1; baseline none;") and lines[0].endswith("; cpu seconds")
    found = rows(lines)
    assert [(r[0], r[1]) for r in found] == [
        (n, what) for n in ("10", "40") for what in ("parse", "fleetctl hosts", "fleetctl check --inventory")
    ]
    assert all(r[2] == "-" and r[4] == "-" and float(r[3]) > 0 for r in found)


def test_an_unknown_baseline_is_one_line_and_exit_1():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench-fleet"), "--sizes", "5", "--baseline", "no-such-rev-xyz"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "baseline 'no-such-rev-xyz' is not a commit here" in done.stderr
