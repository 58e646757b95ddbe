"""
parley-storage against each backend, with this test playing the router.

One real worker process per test (two for the start-up race), its DEALER
connected to a ZeroMQ ROUTER socket owned by the test, so every job and
every liveness message is checked on the wire exactly as envelope.h
describes it: SQLite in a temp dir, PostgreSQL in a fresh database of the
session's private server (conftest.py's pg_database). Every worker is
stopped by its PID (SIGTERM, then SIGKILL) within a fixed time.
"""
import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import types

import pytest
import zmq

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
BIN = os.environ.get("PARLEY_BIN", os.path.join(REPO, "build"))
STORAGE = os.path.join(BIN, "parley-storage")
TIMEOUT = 10          # seconds for any one answer
STOP_TIMEOUT = 5
HEARTBEAT_MS = 100
PEER_TIMEOUT_MS = 500
MIGRATIONS = 2        # files in storage/migrations for each backend

BACKENDS = ["sqlite", "postgresql"]


def cred(hash_len, iterations=4096, salt=None):
    """A credential in scram_cred_encode form: iter$salt$stored$server."""
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return "$".join([str(iterations), b64(salt or os.urandom(16)), b64(os.urandom(hash_len)),
                     b64(os.urandom(hash_len))])


def creds():
    return {"cred_sha1": cred(20), "cred_sha256": cred(32)}


class Worker:
    """One parley-storage process; its stderr goes to log_path."""

    def __init__(self, conf, name, log_path, cwd):
        self.conf, self.name, self.log_path, self.cwd = conf, name, log_path, cwd
        self.proc = None

    def start(self):
        assert os.access(STORAGE, os.X_OK), f"{STORAGE} missing (run `make` first)"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([STORAGE, "-c", self.conf, "-n", self.name], cwd=self.cwd,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    def stop(self, sig=signal.SIGTERM):
        """Signals our PID; returns the exit status (SIGKILL after STOP_TIMEOUT)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"{self.name} (pid {self.proc.pid}) ignored signal {sig} for {STOP_TIMEOUT} s")

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"{self.name}: no log line matching {pattern!r}:\n{self.log()}")


class FakeRouter:
    """The router's storage socket: a ROUTER bound where the workers connect.
    While .alive, answers HELLO with HELLO and HEARTBEAT with HEARTBEAT, as
    the real router does (only while the test is reading)."""

    def __init__(self, endpoint):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.bind(endpoint)
        self.alive = True
        self.seen = []      # every (peer, header) received, in order
        self._seq = 0

    def close(self):
        self.sock.close(0)
        self.ctx.term()

    def send(self, peer, header, payload=None):
        frames = [peer.encode(), json.dumps({"v": 1, **header}).encode()]
        if payload is not None:
            frames.append(payload.encode())
        self.sock.send_multipart(frames)

    def recv(self, timeout=TIMEOUT):
        """(peer, header, payload or None), or None after timeout seconds."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        frames = self.sock.recv_multipart()
        assert len(frames) in (2, 3), f"unexpected frames {frames!r}"
        peer, header = frames[0].decode(), json.loads(frames[1])
        assert header.get("v") == 1, header
        self.seen.append((peer, header))
        if header["op"] in ("hello", "heartbeat") and self.alive:
            self.send(peer, {"op": header["op"]})
        return peer, header, frames[2].decode() if len(frames) == 3 else None

    def wait_op(self, op, peer=None, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self.recv(max(left, 0)) if left > 0 else None
            if msg is None:
                pytest.fail(f"no {op} from {peer or 'any worker'} within {timeout} s; saw {self.seen[-10:]}")
            if msg[1]["op"] == op and (peer is None or msg[0] == peer):
                return msg

    def job(self, peer, what, **fields):
        """Sends one OP_JOB and returns (header, payload) of its result."""
        self._seq += 1
        job_id = f"t{self._seq}"
        self.send(peer, {"op": "job", "what": what, "job": job_id, **fields})
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = self.recv(deadline - time.monotonic())
            if msg and msg[1]["op"] == "job_result":
                assert msg[0] == peer
                assert msg[1]["job"] == job_id, f"result for another job: {msg[1]}"
                return msg[1], msg[2]
        pytest.fail(f"no job_result for {what} {fields} within {TIMEOUT} s")


class Store:
    """A database for one test plus a way to look inside it."""

    def __init__(self, backend, state, conninfo=None):
        self.backend, self.conninfo = backend, conninfo
        self.path = os.path.join(state, "parley.db")

    def config(self):
        if self.backend == "sqlite":
            return {"backend": "sqlite", "sqlite_path": self.path}
        return {"backend": "postgresql", "pg_conninfo": self.conninfo}

    def sql(self, statement):
        """Runs statement outside Parley; returns the rows as tuples of str."""
        if self.backend == "sqlite":
            db = sqlite3.connect(self.path, timeout=10)
            try:
                rows = db.execute(statement).fetchall()
                db.commit()
            finally:
                db.close()
            return [tuple("" if v is None else str(v) for v in r) for r in rows]
        r = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo,
                            "-c", statement], capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, f"psql: {r.stderr}"
        return [tuple(line.split("\t")) for line in r.stdout.splitlines() if line]


@pytest.fixture(params=BACKENDS)
def env(request):
    """Everything one test needs: .store, .router, .worker(name) -> started Worker."""
    # ipc:// paths must fit in 108 bytes: a short dir under /tmp, not tmp_path.
    state = tempfile.mkdtemp(prefix="st", dir="/tmp")
    conninfo = request.getfixturevalue("pg_database")() if request.param == "postgresql" else None
    store = Store(request.param, state, conninfo)
    endpoint = f"ipc://{state}/storage.sock"
    conf = os.path.join(state, "parley.conf")
    with open(conf, "w", encoding="utf-8") as f:
        json.dump({"log": {"level": "debug"},
                   "router": {"heartbeat_ms": HEARTBEAT_MS, "peer_timeout_ms": PEER_TIMEOUT_MS},
                   "storage": {"router_endpoint": endpoint, **store.config()}}, f)
    router = FakeRouter(endpoint)
    workers = []

    def worker(name="storage-1", wait_hello=True):
        w = Worker(conf, name, os.path.join(state, f"{name}.log"), state).start()
        workers.append(w)
        if wait_hello:
            router.wait_op("hello", peer=name)
        return w

    yield types.SimpleNamespace(store=store, router=router, state=state, worker=worker)
    failed = False
    for w in workers:
        rc = w.stop()
        if rc not in (0, None):
            failed = True
    router.close()
    # pytest shows captured output for failed tests only.
    for w in workers:
        print(f"--- {w.name} log ---\n{w.log()}")
    shutil.rmtree(state, ignore_errors=True)
    assert not failed, "a worker did not exit 0 on SIGTERM: " + "; ".join(
        f"{w.name}={w.proc.returncode}" for w in workers)


# ---------------------------------------------------------------------------
# Migrations


def applied_lines(text):
    return re.findall(r"migration (\d+) \((\S+)\) applied", text)


def test_migrations_apply_once(env):
    # A first start applies every migration in order; a restart applies none.
    w = env.worker()
    suffix = "sqlite" if env.store.backend == "sqlite" else "pg"
    assert applied_lines(w.log()) == [("1", f"001_users.{suffix}.sql"), ("2", "002_roster.sql")]
    assert w.stop() == 0
    first_len = len(w.log())
    w.start()
    env.router.wait_op("hello", peer="storage-1")
    w.wait_log(r"schema at version 2 \(0 migrations applied now\)")
    assert applied_lines(w.log()[first_len:]) == []
    assert env.store.sql("SELECT version, name FROM schema_migrations ORDER BY version") == [
        ("1", f"001_users.{suffix}.sql"), ("2", "002_roster.sql")]


def test_two_workers_starting_together(env):
    # Two workers on one fresh database both come up; each migration runs once.
    a = env.worker("storage-a", wait_hello=False)
    b = env.worker("storage-b", wait_hello=False)
    peers = set()
    while peers != {"storage-a", "storage-b"}:
        peers.add(env.router.wait_op("hello")[0])
    assert len(applied_lines(a.log()) + applied_lines(b.log())) == MIGRATIONS
    assert [r[0] for r in env.store.sql("SELECT version FROM schema_migrations ORDER BY version")] == ["1", "2"]
    # Both serve jobs.
    for peer in ("storage-a", "storage-b"):
        hdr, payload = env.router.job(peer, "user_list")
        assert "error" not in hdr and payload == ""


# ---------------------------------------------------------------------------
# Jobs


def test_user_add_then_cred_get_round_trip(env):
    # user_add stores both credentials; cred_get returns them verbatim and
    # echoes job, conn and user.
    env.worker()
    c = creds()
    hdr, _ = env.router.job("storage-1", "user_add", user="alice@example.org", **c)
    assert "error" not in hdr, hdr
    assert hdr["user"] == "alice@example.org" and "conn" not in hdr
    hdr, _ = env.router.job("storage-1", "cred_get", user="alice@example.org", conn=42)
    assert "error" not in hdr, hdr
    assert hdr["conn"] == 42 and hdr["user"] == "alice@example.org"
    assert hdr["cred_sha1"] == c["cred_sha1"] and hdr["cred_sha256"] == c["cred_sha256"]


def test_user_add_duplicate_is_conflict(env):
    # A second user_add for an existing user answers conflict and keeps the first credentials.
    env.worker()
    first = creds()
    assert "error" not in env.router.job("storage-1", "user_add", user="bob@example.org", **first)[0]
    hdr, _ = env.router.job("storage-1", "user_add", user="bob@example.org", **creds())
    assert hdr["error"] == "conflict"
    hdr, _ = env.router.job("storage-1", "cred_get", user="bob@example.org")
    assert hdr["cred_sha256"] == first["cred_sha256"]


def test_cred_get_unknown_user_is_not_found(env):
    # cred_get for a user that never existed answers not-found.
    env.worker()
    hdr, _ = env.router.job("storage-1", "cred_get", user="nobody@example.org", conn=7)
    assert hdr["error"] == "not-found" and hdr["conn"] == 7


def test_user_del_then_not_found(env):
    # user_del removes the account; a second delete and a cred_get say not-found.
    env.worker()
    env.router.job("storage-1", "user_add", user="carol@example.org", **creds())
    hdr, _ = env.router.job("storage-1", "user_del", user="carol@example.org")
    assert "error" not in hdr, hdr
    assert env.router.job("storage-1", "cred_get", user="carol@example.org")[0]["error"] == "not-found"
    assert env.router.job("storage-1", "user_del", user="carol@example.org")[0]["error"] == "not-found"


def test_user_list_sorted(env):
    # user_list returns one bare JID per line in byte order.
    env.worker()
    assert env.router.job("storage-1", "user_list")[1] == ""
    for u in ("zed@example.org", "adam@example.org", "mia@example.org", "adam@example.com"):
        assert "error" not in env.router.job("storage-1", "user_add", user=u, **creds())[0]
    hdr, payload = env.router.job("storage-1", "user_list")
    assert "error" not in hdr
    assert payload == "adam@example.com\nadam@example.org\nmia@example.org\nzed@example.org\n"


def test_roster_get_empty(env):
    # A user without roster rows (or without an account) gets the empty query element.
    env.worker()
    env.router.job("storage-1", "user_add", user="dave@example.org", **creds())
    for user in ("dave@example.org", "ghost@example.org"):
        hdr, payload = env.router.job("storage-1", "roster_get", user=user, conn=3)
        assert "error" not in hdr and hdr["conn"] == 3
        assert payload == "<query xmlns='jabber:iq:roster'/>"


def test_roster_get_reads_tables_and_user_del_clears_them(env):
    # roster_get serializes roster_items and roster_groups (escaped, sorted);
    # user_del deletes the user's roster rows with the account.
    env.worker()
    env.router.job("storage-1", "user_add", user="erin@example.org", **creds())
    env.store.sql("INSERT INTO roster_items (user_id, jid, name, subscription, ask) VALUES "
                  "('erin@example.org', 'frank@example.org', 'Frank <&> ''F''', 'both', NULL), "
                  "('erin@example.org', 'amy@example.org', NULL, 'none', 'subscribe'), "
                  "('other@example.org', 'x@example.org', 'not hers', 'to', NULL)")
    env.store.sql("INSERT INTO roster_groups (user_id, jid, grp) VALUES "
                  "('erin@example.org', 'frank@example.org', 'Work & Play'), "
                  "('erin@example.org', 'frank@example.org', 'Friends'), "
                  "('other@example.org', 'x@example.org', 'G')")
    hdr, payload = env.router.job("storage-1", "roster_get", user="erin@example.org")
    assert "error" not in hdr, hdr
    assert payload == ("<query xmlns='jabber:iq:roster'>"
                       "<item jid='amy@example.org' subscription='none' ask='subscribe'/>"
                       "<item jid='frank@example.org' name='Frank &lt;&amp;&gt; &apos;F&apos;' subscription='both'>"
                       "<group>Friends</group><group>Work &amp; Play</group></item>"
                       "</query>")
    assert "error" not in env.router.job("storage-1", "user_del", user="erin@example.org")[0]
    assert env.store.sql("SELECT user_id FROM roster_items ORDER BY user_id") == [("other@example.org",)]
    assert env.store.sql("SELECT user_id FROM roster_groups ORDER BY user_id") == [("other@example.org",)]


@pytest.mark.parametrize("fields", [
    {"user": "mallory@example.org", "cred_sha1": "garbage", "cred_sha256": cred(32)},
    {"user": "mallory@example.org", "cred_sha1": cred(20), "cred_sha256": cred(20)},  # SHA-1 sized key
    {"user": "mallory@example.org", "cred_sha1": cred(20)},                              # missing sha256
    {"user": "mallory@example.org", "cred_sha1": cred(20, iterations=0), "cred_sha256": cred(32)},
    {"user": "mallory@example.org/phone", **creds()},                                    # full JID
    {"user": "Mallory@Example.org", **creds()},                                          # not normalized
    {"user": "", **creds()},
    {"user": "a" * 3000 + "@" + "b" * 80, **creds()},                                    # > 3071 bytes
    creds(),                                                                             # no user
], ids=["garbage-sha1", "short-sha256", "missing-sha256", "zero-iterations", "full-jid",
        "not-normalized", "empty-user", "too-long", "no-user"])
def test_user_add_bad_request(env, fields):
    # Malformed user_add jobs answer bad-request and store nothing.
    env.worker()
    hdr, _ = env.router.job("storage-1", "user_add", **fields)
    assert hdr["error"] == "bad-request", hdr
    assert env.store.sql("SELECT count(*) FROM users") == [("0",)]


def test_unknown_job_kind_is_bad_request(env):
    # A job kind the worker does not know is answered, with bad-request.
    env.worker()
    hdr, _ = env.router.job("storage-1", "offline_put", user="x@example.org", conn=9)
    assert hdr["error"] == "bad-request" and hdr["conn"] == 9 and hdr["user"] == "x@example.org"
    # ... and the worker carries on.
    assert "error" not in env.router.job("storage-1", "user_list")[0]


# ---------------------------------------------------------------------------
# Liveness


def test_heartbeats_unknown_peer_and_router_restart(env):
    # The worker heartbeats; OP_UNKNOWN_PEER makes it say hello again; a
    # silent router is warned about once and greeted at every heartbeat.
    w = env.worker()
    env.router.wait_op("heartbeat", peer="storage-1")
    env.router.send("storage-1", {"op": "unknown_peer"})
    env.router.wait_op("hello", peer="storage-1", timeout=2)
    # Go silent, as a dead router would: no answers at all.
    env.router.alive = False
    before = len(w.log())
    w.wait_log(r"warn storage\[\d+\] name=storage-1 router silent", timeout=5)
    for _ in range(3):
        env.router.wait_op("hello", peer="storage-1", timeout=2)
    assert len(re.findall(r"router silent", w.log()[before:])) == 1
    env.router.alive = True
    env.router.wait_op("hello", peer="storage-1", timeout=2)
    w.wait_log(r"router is back", timeout=5)
    env.router.wait_op("heartbeat", peer="storage-1", timeout=2)
    assert w.stop() == 0
    assert "shutting down" in w.log()


def test_pg_connection_lost_is_retried(env):
    # When the server drops the worker's connection, the next job reconnects
    # and succeeds.
    if env.store.backend != "postgresql":
        pytest.skip("PostgreSQL only")
    w = env.worker()
    env.router.job("storage-1", "user_add", user="gina@example.org", **creds())
    killed = env.store.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE application_name = 'parley-storage'")
    assert killed == [("1",)]
    hdr, _ = env.router.job("storage-1", "cred_get", user="gina@example.org")
    assert "error" not in hdr, hdr
    assert "retrying once" in w.log()
