"""
Fixtures for the end-to-end tests: real Parley processes in a private state
directory, a private PostgreSQL, and the logs of both attached to the report
of any failing test.

  postgres       session: a PostgreSQL started for this run (root only)
  pg_database    session: factory, pg_database() -> conninfo of a new database
  parley         factory, parley(backend="sqlite", gateways=2, storage=2,
                 **config) -> a started Instance, stopped after the test
  parley_module  the same factory, instances live until the end of the module

Every process is started by us and stopped by its PID within a fixed time
(SIGTERM, then SIGKILL).
"""
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
sys.path.insert(0, os.path.join(REPO, "deploy"))
import parleylib  # noqa: E402

BIN = os.environ.get("PARLEY_BIN", os.path.join(REPO, "build"))
PROGRAMS = ("parley-router", "parley-storage", "parley-gateway", "parleyctl")


def config_sections():
    """Section names of the options table in common/config.c ("gateway", ...)."""
    with open(os.path.join(REPO, "common", "config.c"), encoding="utf-8") as f:
        return frozenset(re.findall(r'\{\s*"(\w+)\.\w+",\s*OPT_', f.read()))


SECTIONS = config_sections()
STOP_TIMEOUT_S = 5
READY_TIMEOUT_S = 15

# Instances alive right now, for the failure report.
_live_instances = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for inst in list(_live_instances):
            inst.failed = True  # keep its state dir for a post-mortem
            for name, text in inst.logs(tail=80).items():
                report.sections.append((f"parley log {os.path.basename(inst.state)}/{name}", text))
        pg = getattr(item.config, "_parley_postgres", None)
        if pg is not None:
            report.sections.append(("postgresql log", pg.log_text()))


def require_binaries():
    missing = [p for p in PROGRAMS if not os.access(os.path.join(BIN, p), os.X_OK)]
    if missing:
        pytest.fail(f"missing in {BIN}: {', '.join(missing)} (run `make` first)", pytrace=False)


# ---------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """A PostgreSQL cluster in a temp dir, run as user postgres, listening on
    a unix socket only (no TCP port is opened)."""

    def __init__(self):
        dirs = glob.glob("/usr/lib/postgresql/*/bin/postgres")
        if not dirs:
            pytest.fail("no PostgreSQL server in /usr/lib/postgresql/*/bin (deploy/install-deps.sh installs it)",
                        pytrace=False)
        self.bindir = os.path.dirname(max(dirs, key=lambda p: int(p.split("/")[4].split(".")[0])))
        self.user = pwd.getpwnam("postgres")
        self.base = tempfile.mkdtemp(prefix="pg", dir="/tmp")
        os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self.data = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        os.mkdir(self.sockdir, 0o700)
        os.chown(self.sockdir, self.user.pw_uid, self.user.pw_gid)
        self.log_path = os.path.join(self.base, "postgres.log")
        self.port = parleylib.free_port()
        self.proc = None
        self._names = itertools.count(1)

    def _as_postgres(self):
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": [],
                "cwd": self.base, "env": {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": self.base}}

    def start(self):
        r = subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "--auth=trust",
                            "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
                           capture_output=True, text=True, timeout=120, check=False, **self._as_postgres())
        if r.returncode != 0:
            pytest.fail(f"initdb failed:\n{r.stdout}\n{r.stderr}", pytrace=False)
        log = open(self.log_path, "wb")
        # The Popen PID is the postmaster itself (no runuser/su in between),
        # so stopping by PID stops the server.
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.sockdir,
             "-p", str(self.port), "-c", "listen_addresses=", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **self._as_postgres())
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"postgres exited with {self.proc.returncode}:\n{self.log_text()}", pytrace=False)
            r = subprocess.run(["pg_isready", "-q", "-h", self.sockdir, "-p", str(self.port)],
                               capture_output=True, timeout=10, check=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"postgres not ready within 30 s:\n{self.log_text()}", pytrace=False)
            time.sleep(0.1)

    def create_database(self):
        name = f"parley{next(self._names)}"
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sockdir,
                            "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                            "-c", f"CREATE DATABASE {name}"],
                           capture_output=True, text=True, timeout=30, check=False)
        if r.returncode != 0:
            pytest.fail(f"CREATE DATABASE {name} failed: {r.stderr}", pytrace=False)
        return f"host={self.sockdir} port={self.port} dbname={name} user=postgres"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-80:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def postgres(pytestconfig):
    if os.geteuid() != 0:
        pytest.skip("the private PostgreSQL runs as user postgres, which needs root (make test runs as root)")
    pg = Postgres()
    pytestconfig._parley_postgres = pg
    try:
        pg.start()
        yield pg
    finally:
        pytestconfig._parley_postgres = None
        pg.stop()


@pytest.fixture(scope="session")
def pg_database(postgres):
    """Factory: pg_database() -> libpq conninfo of a new, empty database."""
    return postgres.create_database


# ---------------------------------------------------------------------------
# Parley instances


class Gateway:
    def __init__(self, name, port, tls_port, conf, proc):
        self.name, self.port, self.tls_port, self.conf, self.proc = name, port, tls_port, conf, proc


class Instance:
    """One Parley server: a router, storage workers and gateways in a state
    dir under /tmp (short: ipc:// paths must fit in 108 bytes). Each gateway
    gets its own config file with its own ports, so a test picks the gateway
    by port: gateways[i].port (STARTTLS) and gateways[i].tls_port."""

    def __init__(self, backend="sqlite", gateways=2, storage=2, pg_conninfo=None, **overrides):
        require_binaries()
        self.state = tempfile.mkdtemp(prefix="p", dir="/tmp")
        self.backend = backend
        self.failed = False
        tree = {
            "domain": "localhost",
            "log": {"level": "debug"},
            # Fast liveness so a killed process is noticed within the test's timeouts.
            "router": {"heartbeat_ms": 200, "peer_timeout_ms": 1500},
            "gateway": {"bind_address": "127.0.0.1", "auth_fail_delay_ms": 100},
            "storage": {"backend": backend, "sqlite_path": "parley.db"},
        }
        if backend == "postgresql":
            tree["storage"]["pg_conninfo"] = pg_conninfo
        merge_overrides(tree, overrides)
        self.tree = tree
        self.domain = tree["domain"]
        self.conf = os.path.join(self.state, "parley.conf")
        self.cert_path = os.path.join(self.state, parleylib.config_get(tree, "gateway.tls_cert"))
        logs = os.path.join(self.state, "log")

        def proc(name, role, prog, conf, *extra):
            return parleylib.Process(name, role, [os.path.join(BIN, prog), "-c", conf, *extra],
                                     cwd=self.state, log_path=os.path.join(logs, f"{name}.log"))

        self.router = proc("router", "router", "parley-router", self.conf)
        self.storage = [proc(f"storage-{i}", "storage", "parley-storage", self.conf, "-n", f"storage-{i}")
                        for i in range(1, storage + 1)]
        self.gateways = []
        used = set()
        for i in range(1, gateways + 1):
            port, tls_port = unused_port(used), unused_port(used)
            gw_tree = {**tree, "gateway": {**tree.get("gateway", {}), "starttls_port": port, "tls_port": tls_port}}
            gw_conf = os.path.join(self.state, f"gateway-{i}.conf")
            parleylib.write_config(gw_conf, gw_tree)
            self.gateways.append(Gateway(f"gateway-{i}", port, tls_port, gw_conf,
                                         proc(f"gateway-{i}", "gateway", "parley-gateway", gw_conf,
                                              "-n", f"gateway-{i}")))
        # The router, storage and parleyctl read parley.conf; its gateway
        # ports are gateway-1's (no process listens on them from this file).
        parleylib.write_config(self.conf, {**tree, "gateway": {**tree.get("gateway", {}),
                                                               "starttls_port": self.gateways[0].port,
                                                               "tls_port": self.gateways[0].tls_port}}
                               if self.gateways else tree)
        self.procs = {p.name: p for p in [self.router, *self.storage, *(g.proc for g in self.gateways)]}

    def __repr__(self):
        return f"<Instance {self.state} {self.backend}>"

    # -- lifecycle

    def start_all(self):
        parleylib.prepare_state(self.state, self.tree)
        self.router.start()
        for p in self.storage:
            p.start()
        for g in self.gateways:
            g.proc.start()
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Waits until `parleyctl status` lists every process that runs now
        (one stopped on purpose is left out); returns the status rows."""
        try:
            return parleylib.wait_listed(lambda: self.ctl("status", timeout_s=1), list(self.procs.values()),
                                         timeout, only_running=True)
        except parleylib.ParleyError as e:
            pytest.fail(f"{self.state}: {e}", pytrace=False)

    def kill(self, name, sig=signal.SIGKILL, timeout=STOP_TIMEOUT_S):
        """Sends sig to one process by PID and waits for it to exit; returns
        its exit status."""
        p = self.procs[name]
        assert p.is_running(), f"{name} is not running"
        p.signal(sig)
        rc = p.wait(timeout)
        assert rc is not None, f"{name} (pid {p.pid}) still runs {timeout} s after signal {sig}"
        return rc

    def start(self, name):
        """Starts a stopped process again (same name, same config)."""
        self.procs[name].start()

    def stop(self):
        """Stops everything (gateways, storage, router last) by PID; returns
        {name: exit status}."""
        return parleylib.stop_processes(
            [[g.proc for g in self.gateways], self.storage, [self.router]], STOP_TIMEOUT_S)

    # -- administration

    def ctl(self, *args, timeout_s=3):
        """parleyctl -c parley.conf ARGS, run in the state dir."""
        return parleylib.run_ctl(os.path.join(BIN, "parleyctl"), self.conf, self.state, *args,
                                 timeout_s=timeout_s)

    def add_user(self, jid, password):
        r = self.ctl("user", "add", jid, password)
        assert r.returncode == 0, f"parleyctl user add {jid}: exit {r.returncode}: {r.stderr}{r.stdout}"

    def status(self):
        r = self.ctl("status")
        assert r.returncode == 0, f"parleyctl status: exit {r.returncode}: {r.stderr}"
        return parleylib.parse_table(r.stdout)

    def logs(self, tail=80):
        return {name: p.log_text(tail) for name, p in self.procs.items() if p.popen is not None}


def unused_port(used):
    while True:
        port = parleylib.free_port()
        if port not in used:
            used.add(port)
            return port


def merge_overrides(tree, overrides):
    """Applies parley(**overrides): gateway_max_stanza_bytes=N sets
    gateway.max_stanza_bytes; gateway={...} merges a section; domain=...
    and scram_iterations=... set top-level options."""
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, dict):
            tree.setdefault(key, {}).update(value)
            continue
        section, _, option = key.partition("_")
        if section in SECTIONS and option:
            tree.setdefault(section, {})[option] = value
        else:
            tree[key] = value


class Factory:
    def __init__(self, request):
        self.request = request
        self.instances = []

    def __call__(self, backend="sqlite", gateways=2, storage=2, **overrides):
        conninfo = None
        if backend == "postgresql":
            conninfo = self.request.getfixturevalue("pg_database")()
        inst = Instance(backend, gateways, storage, conninfo, **overrides)
        self.instances.append(inst)
        _live_instances.append(inst)
        inst.start_all()
        return inst

    def teardown(self):
        for inst in self.instances:
            inst.stop()
            _live_instances.remove(inst)
            if inst.failed:
                sys.stderr.write(f"\nkept state of failed test: {inst.state}\n")
            else:
                shutil.rmtree(inst.state, ignore_errors=True)


@pytest.fixture
def parley(request):
    """Factory: parley(backend, gateways, storage, **config) -> started Instance."""
    f = Factory(request)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def parley_module(request):
    """Like parley, but the instances live until the module's last test."""
    f = Factory(request)
    yield f
    f.teardown()
