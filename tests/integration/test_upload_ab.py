"""
``benchmarks/upload_ab.py`` end to end with tiny uploads, so that the A/B
script the README's "Measured" quotes cannot rot: two daemons of this
checkout (``integrity`` log and off), both rounds, every upload stored and
removed, the medians and the JSON line.
"""

import json

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import run_benchmark

pytestmark = pytest.mark.slow


def test_two_daemons_two_rounds(tmp_path):
    code, out, err = run_benchmark(
        "upload_ab.py",
        ["--size-mib", "4", "--rounds", "2", f"log={REPO_ROOT}",
         f"off={REPO_ROOT}:RS_INTEGRITY=off"],
        cwd=tmp_path, timeout=120)
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["size"] == 4 << 20
    rows = report["rounds"]
    # Both daemons in both rounds, the order reversed in the second.
    assert [(r["round"], r["daemon"]) for r in rows] == [
        (0, "log"), (0, "off"), (1, "off"), (1, "log")]
    assert all(r["code"] == 200 and r["removed"] == 200 for r in rows)
    assert all(r["mb_per_s"] > 0 and r["daemon_cpu_s"] >= 0 for r in rows)
    assert set(report["medians"]) == {"log", "off"}


def test_a_malformed_daemon_spec_is_refused(tmp_path):
    code, out, err = run_benchmark("upload_ab.py", ["log"], cwd=tmp_path, timeout=30)
    assert code == 2 and "NAME=DIR" in err
    code, out, err = run_benchmark("upload_ab.py", [f"a={REPO_ROOT}:INTEGRITY=off"],
                                   cwd=tmp_path, timeout=30)
    assert code == 2 and "RS_VAR=VALUE" in err
