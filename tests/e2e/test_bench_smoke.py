"""
Smoke runs of the load generator (tools/bench, build/parley-bench) against
a real Parley instance started by conftest.py: a few hundred clients for a
few seconds per scenario, over STARTTLS with SCRAM, spread over both
gateways and several source addresses, in two generator processes. The
accounts go straight into the instance's SQLite store (--create).

No figure is asserted (speed is BENCHMARKS.md's business); each test checks
that every login succeeded and every message sent arrived: parley-bench's
JSON report and its exit status (0 = nothing failed or went missing).
"""
import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
BIN = os.environ.get("PARLEY_BIN", os.path.join(REPO, "build"))
BENCH = os.path.join(BIN, "parley-bench")
RUN_TIMEOUT_S = 120


def bench(inst, tmp_path, *args):
    """Runs parley-bench against inst's gateways; returns the JSON report."""
    if not os.access(BENCH, os.X_OK):
        pytest.fail(f"{BENCH} is missing (run `make` first)", pytrace=False)
    out = tmp_path / "report.json"
    ports = ",".join(str(g.port) for g in inst.gateways)
    argv = [BENCH, *args, "--port", ports, "--domain", inst.domain,
            "--db", f"sqlite:{os.path.join(inst.state, 'parley.db')}", "--create",
            "--procs", "2", "--sources", "4", "--timeout", "20", "--max-time", "100",
            "--quiet", "--json", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert out.exists(), f"no report; exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    report = json.loads(out.read_text())
    report["_exit"], report["_output"] = r.returncode, r.stdout + r.stderr
    return report


def assert_logins(report, n):
    assert report["login"]["ok"] == n, report["_output"]
    assert report["login"]["failed"] == 0, report["failures"]
    assert report["failures"]["dropped"] == 0, report["failures"]


def test_connect_holds_every_session(parley, tmp_path):
    inst = parley()
    report = bench(inst, tmp_path, "connect", "--users", "300", "--duration", "2", "--ramp", "1000")
    assert_logins(report, 300)
    assert report["connections"]["held_end"] == 300
    assert report["connections"]["min_during_hold"] == 300
    assert report["_exit"] == 0, report["_output"]


def test_chat_delivers_every_message(parley, tmp_path):
    inst = parley()
    report = bench(inst, tmp_path, "chat", "--users", "200", "--rate", "400", "--duration", "3",
                   "--drain", "15")
    assert_logins(report, 200)
    m = report["messages"]
    assert m["sent"] > 0 and m["not_sent"] == 0, m
    assert m["received"] == m["sent"], m
    assert m["lost"] == 0 and m["bounced"] == 0 and m["stale"] == 0, m
    assert m["latency"]["count"] == m["received"]
    assert report["_exit"] == 0, report["_output"]


def test_offline_stores_and_drains_every_message(parley, tmp_path):
    inst = parley()
    report = bench(inst, tmp_path, "offline", "--users", "50", "--receivers", "50", "--messages", "2000",
                   "--drain", "15")
    assert_logins(report, 100)
    m, off = report["messages"], report["offline"]
    assert m["sent"] == 2000, m
    assert off["store_check"] == "db" and off["stored_rows"] == 2000, off
    assert m["received"] == 2000 and m["delayed"] == 2000, m
    assert m["duplicates"] == 0 and m["bounced"] == 0, m
    assert off["complete"] is True
    assert report["_exit"] == 0, report["_output"]
