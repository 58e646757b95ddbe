"""
parley-storage against each backend, with this test playing the router.

One real worker process per test (two for the start-up race and the shared
quota), its DEALER connected to a ZeroMQ ROUTER socket owned by the test,
so every job and every liveness message is checked on the wire exactly as
envelope.h describes it: SQLite in a temp dir, PostgreSQL in a fresh
database of the session's private server (conftest.py's pg_database). Every worker is
stopped by its PID (SIGTERM, then SIGKILL) within a fixed time. Batching
is tested by pausing the worker (SIGSTOP by PID) while a burst of jobs
queues up on its socket, and by the debug line it logs per transaction.
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
import xml.etree.ElementTree as ET

import pytest
import zmq

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
BIN = os.environ.get("PARLEY_BIN", os.path.join(REPO, "build"))
STORAGE = os.path.join(BIN, "parley-storage")
TIMEOUT = 10          # seconds for any one answer
STOP_TIMEOUT = 5
HEARTBEAT_MS = 100
PEER_TIMEOUT_MS = 500

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
        self._pending = []  # envelopes of a received message not yet returned
        self._seq = 0

    def close(self):
        self.sock.close(0)
        self.ctx.term()

    def send(self, peer, header, payload=None):
        """One envelope in one message (envelope.h: "p":1 announces a payload)."""
        head = {"v": 2, **header}
        if payload is not None:
            head["p"] = 1
        frames = [peer.encode(), json.dumps(head).encode()]
        if payload is not None:
            frames.append(payload.encode())
        self.sock.send_multipart(frames)

    def _split(self, frames):
        """The envelopes of one message: [(peer, header, payload or None)]."""
        peer, rest, out = frames[0].decode(), frames[1:], []
        while rest:
            header = json.loads(rest[0])
            assert header.get("v") == 2, header
            payload = None
            if header.pop("p", 0) == 1:
                assert len(rest) >= 2, f"payload frame missing: {frames!r}"
                payload, rest = rest[1].decode(), rest[2:]
            else:
                rest = rest[1:]
            out.append((peer, header, payload))
        assert out, f"unexpected frames {frames!r}"
        return out

    def recv(self, timeout=TIMEOUT):
        """(peer, header, payload or None), or None after timeout seconds."""
        if not self._pending:
            if not self.sock.poll(int(timeout * 1000)):
                return None
            self._pending.extend(self._split(self.sock.recv_multipart()))
        peer, header, payload = self._pending.pop(0)
        self.seen.append((peer, header))
        if header["op"] in ("hello", "heartbeat") and self.alive:
            self.send(peer, {"op": header["op"]})
        return peer, header, payload

    def wait_op(self, op, peer=None, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self.recv(max(left, 0)) if left > 0 else None
            if msg is None:
                pytest.fail(f"no {op} from {peer or 'any worker'} within {timeout} s; saw {self.seen[-10:]}")
            if msg[1]["op"] == op and (peer is None or msg[0] == peer):
                return msg

    def job(self, peer, what, payload=None, **fields):
        """Sends one OP_JOB and returns (header, payload) of its result."""
        self._seq += 1
        job_id = f"t{self._seq}"
        self.send(peer, {"op": "job", "what": what, "job": job_id, **fields}, payload)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = self.recv(deadline - time.monotonic())
            if msg and msg[1]["op"] == "job_result":
                assert msg[0] == peer
                assert msg[1]["job"] == job_id, f"result for another job: {msg[1]}"
                return msg[1], msg[2]
        pytest.fail(f"no job_result for {what} {fields} within {TIMEOUT} s")


    def send_jobs(self, peer, jobs):
        """Sends every (what, payload, fields) of jobs at once; returns their ids."""
        ids = []
        for what, payload, fields in jobs:
            self._seq += 1
            ids.append(f"t{self._seq}")
            self.send(peer, {"op": "job", "what": what, "job": ids[-1], **fields}, payload)
        return ids

    def results(self, peer, ids, timeout=30):
        """The (header, payload) results of the jobs ids, asserting they
        arrive in the order the jobs were sent."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < len(ids):
            msg = self.recv(max(deadline - time.monotonic(), 0))
            if msg is None:
                pytest.fail(f"{len(out)} of {len(ids)} results within {timeout} s")
            if msg[1]["op"] == "job_result":
                assert msg[0] == peer
                assert msg[1]["job"] == ids[len(out)], f"result {msg[1]} out of order"
                out.append((msg[1], msg[2]))
        return out


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


def migrations(backend):
    """The (version, file) of every migration in storage/migrations for backend, in order."""
    suffix = "sqlite" if backend == "sqlite" else "pg"
    files = [("1", f"001_users.{suffix}.sql"), ("2", "002_roster.sql"), ("3", "003_roster_pending.sql"),
             ("4", "004_last_activity.sql"), ("5", f"005_offline.{suffix}.sql"), ("6", f"006_archive.{suffix}.sql")]
    if backend == "sqlite":
        files.append(("8", "008_archive_indexes.sqlite.sql"))
    else:
        files.append(("7", "007_offline_count.pg.sql"))
    return files


def test_migrations_apply_once(env):
    # A first start applies every migration in order; a restart applies none.
    w = env.worker()
    expected = migrations(env.store.backend)
    assert applied_lines(w.log()) == expected
    assert w.stop() == 0
    first_len = len(w.log())
    w.start()
    env.router.wait_op("hello", peer="storage-1")
    w.wait_log(rf"schema at version {expected[-1][0]} \(0 migrations applied now\)")
    assert applied_lines(w.log()[first_len:]) == []
    assert env.store.sql("SELECT version, name FROM schema_migrations ORDER BY version") == expected


def test_two_workers_starting_together(env):
    # Two workers on one fresh database both come up; each migration runs once.
    a = env.worker("storage-a", wait_hello=False)
    b = env.worker("storage-b", wait_hello=False)
    peers = set()
    while peers != {"storage-a", "storage-b"}:
        peers.add(env.router.wait_op("hello")[0])
    assert len(applied_lines(a.log()) + applied_lines(b.log())) == len(migrations(env.store.backend))
    assert [r[0] for r in env.store.sql("SELECT version FROM schema_migrations ORDER BY version")] == [
        v for v, _ in migrations(env.store.backend)]
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
        assert payload == "<query xmlns='jabber:iq:roster' ver='0'/>"


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
    assert payload == ("<query xmlns='jabber:iq:roster' ver='0'>"
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
    hdr, _ = env.router.job("storage-1", "drop_tables", user="x@example.org", conn=9)
    assert hdr["error"] == "bad-request" and hdr["conn"] == 9 and hdr["user"] == "x@example.org"
    # ... and the worker carries on.
    assert "error" not in env.router.job("storage-1", "user_list")[0]


# ---------------------------------------------------------------------------
# Roster writes, pending requests, last activity, offline messages, archive

W = "storage-1"
NS_R = "jabber:iq:roster"


def ok(env, what, payload=None, **fields):
    """Runs one job that must succeed; returns (header, payload)."""
    hdr, out = env.router.job(W, what, payload, **fields)
    assert "error" not in hdr, (what, fields, hdr)
    return hdr, out


def new_user(env, user):
    ok(env, "user_add", user=user, **creds())


def item(jid, sub=None, name=None, ask=None, groups=(), extra=""):
    attrs = f" jid='{jid}'" + (f" subscription='{sub}'" if sub else "") + (f" name='{name}'" if name else "") \
        + (f" ask='{ask}'" if ask else "")
    body = "".join(f"<group>{g}</group>" for g in groups)
    return f"<item xmlns='{NS_R}'{attrs}{extra}>{body}</item>"


def msg(n, to="carl@example.org"):
    return f"<message to='{to}' type='chat' id='m{n}'><body>hello {n} &amp; bye</body></message>"


def test_roster_put_del_and_pending_round_trip(env):
    # roster_put stores an item with its groups and sets the version;
    # a second put replaces it; pending requests follow the items; roster_del
    # removes an item and its groups; every write moves ver.
    env.worker()
    new_user(env, "rita@example.org")
    u = {"user": "rita@example.org"}
    ok(env, "roster_put", item("zoe@example.org", "both", "Zoë &lt;Z>", groups=["Work", "A&amp;B"]), ver="1", **u)
    ok(env, "roster_put", item("adam@example.org", ask="subscribe"), ver="2", **u)
    ok(env, "pending_put", jid="eve@example.org", **u)
    ok(env, "pending_put", jid="bob@example.org", **u)
    ok(env, "pending_put", jid="bob@example.org", **u)                   # a repeat changes nothing
    _, payload = ok(env, "roster_get", **u)
    assert payload == (f"<query xmlns='{NS_R}' ver='2'>"
                       "<item jid='adam@example.org' subscription='none' ask='subscribe'/>"
                       "<item jid='zoe@example.org' name='Zoë &lt;Z&gt;' subscription='both'>"
                       "<group>A&amp;B</group><group>Work</group></item>"
                       "<pending xmlns='urn:parley:internal' jid='bob@example.org'/>"
                       "<pending xmlns='urn:parley:internal' jid='eve@example.org'/>"
                       "</query>")
    # Replace: new name and groups, subscription changes, one group kept.
    ok(env, "roster_put", item("zoe@example.org", "to", groups=["Work", "Home"]), ver="3", **u)
    ok(env, "pending_del", jid="eve@example.org", **u)
    ok(env, "pending_del", jid="nobody@example.org", **u)                # absent: still fine
    ok(env, "roster_del", jid="adam@example.org", ver="4", **u)
    _, payload = ok(env, "roster_get", **u)
    assert payload == (f"<query xmlns='{NS_R}' ver='4'>"
                       "<item jid='zoe@example.org' subscription='to'><group>Home</group><group>Work</group></item>"
                       "<pending xmlns='urn:parley:internal' jid='bob@example.org'/>"
                       "</query>")
    assert env.store.sql("SELECT roster_ver FROM users WHERE user_id = 'rita@example.org'") == [("4",)]
    ok(env, "roster_del", jid="zoe@example.org", ver="5", **u)
    assert env.store.sql("SELECT count(*) FROM roster_groups") == [("0",)]
    _, payload = ok(env, "roster_get", **u)
    assert payload == (f"<query xmlns='{NS_R}' ver='5'>"
                       "<pending xmlns='urn:parley:internal' jid='bob@example.org'/></query>")


def test_roster_writes_for_unknown_user_are_not_found(env):
    # Writes that store something for an account that does not exist answer
    # not-found and store nothing; idempotent deletes succeed.
    env.worker()
    u = {"user": "ghost@example.org"}
    for what, payload, fields in [
            ("roster_put", item("a@example.org"), {"ver": "1"}),
            ("roster_del", None, {"jid": "a@example.org", "ver": "1"}),
            ("pending_put", None, {"jid": "a@example.org"}),
            ("last_set", None, {"since": 5}),
            ("offline_put", msg(1), {"id": "o1", "stamp": 1, "limit": 10}),
            ("archive_put", msg(1), {"id": "a1", "jid": "a@example.org", "stamp": 1, "text": "in"})]:
        hdr, _ = env.router.job(W, what, payload, **u, **fields)
        assert hdr["error"] == "not-found", (what, hdr)
    ok(env, "pending_del", jid="a@example.org", **u)
    ok(env, "offline_del", "o1\n", **u)
    for table in ("roster_items", "roster_groups", "roster_pending", "last_activity", "offline_messages", "archive"):
        assert env.store.sql(f"SELECT count(*) FROM {table}") == [("0",)], table


@pytest.mark.parametrize("payload,fields", [
    (item("bob@example.org/phone"), {}),                              # full JID
    (item("Bob@example.org"), {}),                                    # not normalized
    (item(""), {}),                                                   # empty jid
    ("<item xmlns='jabber:iq:roster' subscription='both'/>", {}),     # no jid
    (item("bob@example.org", "remove"), {}),
    (item("bob@example.org", "bogus"), {}),
    (item("bob@example.org", ask="unsubscribe"), {}),
    (item("bob@example.org", name="n" * 1024), {}),
    (item("bob@example.org", groups=[""]), {}),
    (item("bob@example.org", groups=["g" * 1024]), {}),
    (item("bob@example.org", groups=[f"g{i}" for i in range(1001)]), {}),
    (item("bob@example.org", groups=["Same", "Same"]), {}),
    ("<item jid='bob@example.org'/>", {}),                            # jabber:client, not jabber:iq:roster
    ("<query xmlns='jabber:iq:roster'/>", {}),
    ("<item xmlns='jabber:iq:roster' jid='bob@example.org'", {}),     # malformed
    (None, {}),                                                       # no payload
    (item("bob@example.org"), {"ver": None}),                         # no ver
    (item("bob@example.org"), {"ver": "x1"}),
    (item("bob@example.org"), {"ver": "-1"}),
], ids=["full-jid", "not-normalized", "empty-jid", "no-jid", "sub-remove", "sub-bogus", "ask-unsubscribe",
        "name-1024", "group-empty", "group-1024", "groups-1001", "group-twice", "wrong-ns", "wrong-element",
        "malformed", "no-payload", "no-ver", "ver-text", "ver-negative"])
def test_roster_put_bad_request(env, payload, fields):
    # roster_put refuses items a client could not be shown, and stores nothing.
    env.worker()
    new_user(env, "rob@example.org")
    args = {"ver": "7", **fields}
    args = {k: v for k, v in args.items() if v is not None}
    hdr, _ = env.router.job(W, "roster_put", payload, user="rob@example.org", **args)
    assert hdr["error"] == "bad-request", hdr
    assert env.store.sql("SELECT count(*) FROM roster_items") == [("0",)]
    assert env.store.sql("SELECT roster_ver FROM users") == [("0",)]


def test_roster_put_limits_are_inclusive(env):
    # A 1023-byte name and group and 1000 groups are accepted.
    env.worker()
    new_user(env, "rob@example.org")
    groups = ["g" * 1023] + [f"g{i:04d}" for i in range(999)]
    ok(env, "roster_put", item("bob@example.org", name="n" * 1023, groups=groups), user="rob@example.org", ver="1")
    assert env.store.sql("SELECT count(*) FROM roster_groups") == [("1000",)]
    _, payload = ok(env, "roster_get", user="rob@example.org")
    assert payload.count("<group>") == 1000 and "n" * 1023 in payload


def test_last_set_and_get(env):
    # last_get is not-found until last_set; the last last_set wins; the
    # status text is optional.
    env.worker()
    new_user(env, "lena@example.org")
    u = {"user": "lena@example.org"}
    assert env.router.job(W, "last_get", **u)[0]["error"] == "not-found"
    ok(env, "last_set", since=1700000000, text="Gone fishing <3", **u)
    hdr, _ = ok(env, "last_get", **u)
    assert hdr["since"] == 1700000000 and hdr["text"] == "Gone fishing <3"
    ok(env, "last_set", since=1700000100, **u)
    hdr, _ = ok(env, "last_get", **u)
    assert hdr["since"] == 1700000100 and "text" not in hdr
    assert env.router.job(W, "last_set", **u)[0]["error"] == "bad-request"            # no since
    assert env.router.job(W, "last_set", since=-1, **u)[0]["error"] == "bad-request"


def test_offline_put_get_del(env):
    # offline_get returns messages oldest first by (stamp, id), whatever the
    # order they were put in; offline_del deletes the ids listed one per line.
    env.worker()
    new_user(env, "olga@example.org")
    u = {"user": "olga@example.org", "limit": 100}
    assert ok(env, "offline_get", user="olga@example.org")[1] == "<messages/>"
    ok(env, "offline_put", msg(3), id="c", stamp=300, **u)
    ok(env, "offline_put", msg(1), id="b", stamp=100, **u)
    ok(env, "offline_put", msg(2), id="a", stamp=100, **u)                 # same stamp: id decides
    _, payload = ok(env, "offline_get", user="olga@example.org")
    assert payload == ("<messages>"
                       f"<msg id='a' stamp='100'>{msg(2)}</msg>"
                       f"<msg id='b' stamp='100'>{msg(1)}</msg>"
                       f"<msg id='c' stamp='300'>{msg(3)}</msg>"
                       "</messages>")
    ok(env, "offline_del", "a\nc\nunknown\n", user="olga@example.org")
    _, payload = ok(env, "offline_get", user="olga@example.org")
    assert payload == f"<messages><msg id='b' stamp='100'>{msg(1)}</msg></messages>"
    # Another user's store is separate.
    assert ok(env, "offline_get", user="ghost@example.org")[1] == "<messages/>"


def test_offline_put_quota_and_repeats(env):
    # With limit messages stored the next put is resource-constraint; a
    # repeated id is a no-op success, even when the store is full.
    env.worker()
    new_user(env, "quinn@example.org")
    u = {"user": "quinn@example.org", "limit": 3}
    for i in range(3):
        ok(env, "offline_put", msg(i), id=f"q{i}", stamp=10 + i, **u)
    hdr, _ = env.router.job(W, "offline_put", msg(9), id="q9", stamp=99, **u)
    assert hdr["error"] == "resource-constraint"
    hdr, _ = ok(env, "offline_put", msg(0), id="q0", stamp=10, **u)             # repeat when full
    hdr, _ = ok(env, "offline_put", "<message><body>other</body></message>", id="q1", stamp=5, **u)
    assert env.store.sql("SELECT id, stamp FROM offline_messages ORDER BY id") == [
        ("q0", "10"), ("q1", "11"), ("q2", "12")]                               # the first put stays
    assert "other" not in ok(env, "offline_get", user="quinn@example.org")[1]
    ok(env, "offline_del", "q1", user="quinn@example.org")
    ok(env, "offline_put", msg(9), id="q9", stamp=99, **u)                      # room again
    hdr, _ = env.router.job(W, "offline_put", msg(8), id="q8", stamp=98, user="quinn@example.org", limit=0)
    assert hdr["error"] == "resource-constraint"


@pytest.mark.parametrize("payload,fields", [
    (msg(1), {"id": None}),
    (msg(1), {"id": ""}),
    (msg(1), {"id": "a\nb"}),
    (msg(1), {"id": "x" * 1024}),
    (msg(1), {"stamp": None}),
    (msg(1), {"stamp": -5}),
    (msg(1), {"limit": None}),
    (None, {}),
    ("", {}),
    ("<message/>\0<x/>", {}),
], ids=["no-id", "empty-id", "newline-id", "long-id", "no-stamp", "negative-stamp", "no-limit", "no-payload",
        "empty-payload", "nul-in-payload"])
def test_offline_put_bad_request(env, payload, fields):
    # A malformed offline_put is bad-request and stores nothing. (The
    # message itself is not parsed: test_offline_malformed_row_left_out.)
    env.worker()
    new_user(env, "olga@example.org")
    args = {"id": "o1", "stamp": 1, "limit": 10, **fields}
    args = {k: v for k, v in args.items() if v is not None}
    hdr, _ = env.router.job(W, "offline_put", payload, user="olga@example.org", **args)
    assert hdr["error"] == "bad-request", hdr
    assert env.store.sql("SELECT count(*) FROM offline_messages") == [("0",)]


def test_offline_malformed_row_left_out(env):
    # offline_put stores the message without parsing it (the router stores
    # what a gateway serialized); a stored message that is not one
    # well-formed element is left out of offline_get (and logged), so it
    # cannot spoil the other messages of that login.
    w = env.worker()
    new_user(env, "olga@example.org")
    u = {"user": "olga@example.org", "limit": 10}
    ok(env, "offline_put", msg(1), id="o1", stamp=10, **u)
    ok(env, "offline_put", "<message><body>unclosed</message>", id="o2", stamp=20, **u)
    ok(env, "offline_put", "<message/><message/>", id="o3", stamp=30, **u)
    ok(env, "offline_put", msg(4), id="o4", stamp=40, **u)
    _, payload = ok(env, "offline_get", user="olga@example.org")
    root = ET.fromstring(payload)
    assert [m.get("id") for m in root] == ["o1", "o4"], payload
    w.wait_log(r"offline_get user=olga@example.org: 2 stored messages are not well-formed; left out")


def archive_fill(env, user="ada@example.org", n=10):
    """n entries a0..a(n-1), stamps 1000, 1010, ...; odd ones with bob, even with cat."""
    new_user(env, user)
    for i in range(n):
        peer = "bob@example.org" if i % 2 else "cat@example.org"
        ok(env, "archive_put", msg(i, peer), user=user, id=f"a{i:02d}", jid=peer, stamp=1000 + 10 * i,
           text="in" if i % 3 else "out")


def query(env, user="ada@example.org", **attrs):
    """archive_query with <q/> attributes; returns (header, [ids], complete, count)."""
    q = "<q" + "".join(f" {k}='{v}'" for k, v in attrs.items()) + "/>"
    hdr, payload = env.router.job(W, "archive_query", q, user=user)
    if "error" in hdr:
        return hdr, None, None, None
    head = re.match(r"<results complete='([01])' count='(\d+)'", payload)
    assert head, payload
    return hdr, re.findall(r"<r id='([^']*)'", payload), head.group(1) == "1", int(head.group(2))


def test_archive_put_and_query_payload(env):
    # archive_query returns each entry with id, stamp, peer, direction and
    # the message verbatim; a repeated id is a no-op.
    env.worker()
    new_user(env, "ada@example.org")
    ok(env, "archive_put", msg(1), user="ada@example.org", id="x1", jid="bob@example.org", stamp=5, text="out")
    ok(env, "archive_put", msg(2), user="ada@example.org", id="x1", jid="cat@example.org", stamp=6, text="in")
    hdr, payload = ok(env, "archive_query", "<q/>", user="ada@example.org")
    assert payload == ("<results complete='1' count='1'>"
                       f"<r id='x1' stamp='5' jid='bob@example.org' dir='out'>{msg(1)}</r></results>")
    assert ok(env, "archive_query", "<q/>", user="nobody@example.org")[1] == "<results complete='1' count='0'/>"
    for fields in ({"text": "sideways"}, {"jid": "Bob@example.org"}, {"jid": None}, {"stamp": None}):
        args = {"id": "x2", "jid": "bob@example.org", "stamp": 7, "text": "in", **fields}
        args = {k: v for k, v in args.items() if v is not None}
        assert env.router.job(W, "archive_put", msg(3), user="ada@example.org", **args)[0]["error"] == "bad-request"


def test_archive_paging_forward(env):
    # Forward paging with after: pages of max in time order, complete='1'
    # only on the page that reaches the newest entry; count ignores paging.
    env.worker()
    archive_fill(env)
    _, ids, complete, count = query(env, max=4)
    assert ids == ["a00", "a01", "a02", "a03"] and not complete and count == 10
    _, ids, complete, count = query(env, max=4, after="a03")
    assert ids == ["a04", "a05", "a06", "a07"] and not complete and count == 10
    _, ids, complete, _ = query(env, max=4, after="a07")
    assert ids == ["a08", "a09"] and complete
    _, ids, complete, _ = query(env, max=2, after="a07")
    assert ids == ["a08", "a09"] and complete                # exactly reaches the end
    _, ids, complete, _ = query(env, max=4, after="a09")
    assert ids == [] and complete
    _, ids, complete, count = query(env)                     # no max: everything
    assert len(ids) == 10 and complete and count == 10


def test_archive_paging_backward(env):
    # Backward paging with before: the last max entries before it, in time
    # order; before='' is the last page; complete='1' at the oldest entry.
    env.worker()
    archive_fill(env)
    _, ids, complete, count = query(env, max=4, before="")
    assert ids == ["a06", "a07", "a08", "a09"] and not complete and count == 10
    _, ids, complete, _ = query(env, max=4, before="a06")
    assert ids == ["a02", "a03", "a04", "a05"] and not complete
    _, ids, complete, _ = query(env, max=4, before="a02")
    assert ids == ["a00", "a01"] and complete
    _, ids, complete, _ = query(env, max=3, before="a08", after="a02")
    assert ids == ["a05", "a06", "a07"] and not complete
    _, ids, complete, _ = query(env, max=5, before="a08", after="a02")
    assert ids == ["a03", "a04", "a05", "a06", "a07"] and complete
    _, ids, complete, count = query(env, max=0, before="")
    assert ids == [] and not complete and count == 10


def test_archive_filters(env):
    # with, start and end filter both the page and the count; unknown
    # after/before ids are not-found; bad filters are bad-request.
    env.worker()
    archive_fill(env)
    _, ids, complete, count = query(env, **{"with": "bob@example.org", "max": 3})
    assert ids == ["a01", "a03", "a05"] and not complete and count == 5
    _, ids, complete, count = query(env, **{"with": "bob@example.org", "after": "a05"})
    assert ids == ["a07", "a09"] and complete and count == 5
    _, ids, complete, count = query(env, start=1020, end=1050)            # inclusive
    assert ids == ["a02", "a03", "a04", "a05"] and complete and count == 4
    _, ids, complete, count = query(env, **{"with": "cat@example.org", "start": 1020, "end": 1050, "before": ""})
    assert ids == ["a02", "a04"] and complete and count == 2
    _, ids, _, count = query(env, start=5000)
    assert ids == [] and count == 0
    assert query(env, after="nope")[0]["error"] == "not-found"
    assert query(env, before="nope")[0]["error"] == "not-found"
    assert query(env, user="bea@example.org", after="a01")[0]["error"] == "not-found"   # another user's id
    for attrs in ({"with": "Bob@example.org"}, {"with": "bob@example.org/pda"}, {"start": "yesterday"},
                  {"max": "-1"}, {"end": "1e9"}):
        assert query(env, **attrs)[0]["error"] == "bad-request", attrs
    hdr, _ = env.router.job(W, "archive_query", "<query/>", user="ada@example.org")
    assert hdr["error"] == "bad-request"


def test_archive_malformed_row_left_out(env):
    # archive_put stores the message without parsing it; a stored message
    # that is not one well-formed element is left out of the page (and
    # logged), so one bad row cannot spoil every page around it.
    w = env.worker()
    archive_fill(env, n=4)
    ok(env, "archive_put", "<message><body>cut", user="ada@example.org", id="a01x", jid="bob@example.org",
       stamp=1011, text="in")
    hdr, ids, complete, count = query(env)
    assert ids == ["a00", "a01", "a02", "a03"] and complete and count == 5, (hdr, ids)
    w.wait_log(r"archive_query: 1 stored message is not well-formed; left out of the page")
    hdr, _ = env.router.job(W, "archive_put", "<message/>\0<x/>", user="ada@example.org", id="a9",
                            jid="bob@example.org", stamp=2000, text="in")
    assert hdr["error"] == "bad-request"


def test_archive_query_plans(env):
    # SQLite (migration 008): the archive has one index led by user_id, and
    # every query shape of sqlite_jobs.c searches an index rather than the
    # table: by user and time window, by user and peer ("with", tested
    # inside archive_time), and the after/before position by (user, id).
    if env.store.backend != "sqlite":
        pytest.skip("SQLite's schema")
    env.worker()
    where = " WHERE user_id = ?1 AND stamp >= ?3 AND stamp <= ?4 AND (?2 IS NULL OR peer = ?2)"
    page = ("SELECT id, stamp, peer, dir, xml FROM archive" + where +
            " AND (stamp, id) > (?5, ?6) AND (stamp, id) < (?7, ?8)")
    plans = {
        "SELECT count(*) FROM archive" + where: "COVERING INDEX archive_time (user_id=? AND stamp>? AND stamp<?)",
        page + " ORDER BY stamp, id LIMIT ?9": "INDEX archive_time (user_id=? AND stamp>? AND stamp<?)",
        page + " ORDER BY stamp DESC, id DESC LIMIT ?9": "INDEX archive_time (user_id=? AND stamp>? AND stamp<?)",
        "SELECT stamp FROM archive WHERE user_id = ?1 AND id = ?2": "INDEX sqlite_autoindex_archive_1 (id=? AND user_id=?)",
        "DELETE FROM archive WHERE user_id = ?1": "INDEX archive_time (user_id=?)",
    }
    db = sqlite3.connect(env.store.path)
    try:
        for sql, index in plans.items():
            nargs = max(int(n) for n in re.findall(r"\?(\d)", sql))
            rows = db.execute("EXPLAIN QUERY PLAN " + sql, (None,) * nargs).fetchall()
            detail = " | ".join(r[-1] for r in rows)
            assert detail == "SEARCH archive USING " + index, (sql, detail)
    finally:
        db.close()
    assert sorted(r[0] for r in env.store.sql("SELECT name FROM sqlite_master WHERE tbl_name = 'archive'")) == [
        "archive", "archive_time", "sqlite_autoindex_archive_1"]


def test_archive_upgrade_keeps_rows(env):
    # A database written with 006's archive keeps its rows through 008.
    if env.store.backend != "sqlite":
        pytest.skip("SQLite's migration")
    mig = os.path.join(REPO, "storage", "migrations")
    db = sqlite3.connect(env.store.path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
               " applied_at TEXT NOT NULL DEFAULT '')")
    for version, name in migrations("sqlite")[:6]:
        with open(os.path.join(mig, name), encoding="utf-8") as f:
            db.executescript(f.read())
        db.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (int(version), name))
    db.execute("INSERT INTO users (user_id, cred_sha1, cred_sha256) VALUES ('ada@example.org', 'x', 'y')")
    for i in range(5):
        db.execute("INSERT INTO archive VALUES ('ada@example.org', ?, 'bob@example.org', ?, 'in', ?)",
                   (f"a{i:02d}", 1000 + 10 * i, msg(i)))
    db.commit()
    db.close()
    w = env.worker()
    assert applied_lines(w.log()) == [("8", "008_archive_indexes.sqlite.sql")]
    _, ids, complete, count = query(env, max=3, after="a00")
    assert ids == ["a01", "a02", "a03"] and not complete and count == 5
    ok(env, "archive_put", msg(9), user="ada@example.org", id="a00", jid="bob@example.org", stamp=1, text="in")
    assert env.store.sql("SELECT count(*) FROM archive") == [("5",)]     # (user, id) still unique


def test_archive_purge(env):
    # archive_purge deletes the entries of every user older than stamp and
    # says how many.
    env.worker()
    archive_fill(env, "ada@example.org", 6)
    archive_fill(env, "bea@example.org", 4)
    hdr, _ = ok(env, "archive_purge", stamp=1030)
    assert hdr["text"] == "6"                                  # a00..a02 of each
    assert env.store.sql("SELECT user_id, id FROM archive ORDER BY user_id, id") == [
        ("ada@example.org", "a03"), ("ada@example.org", "a04"), ("ada@example.org", "a05"),
        ("bea@example.org", "a03")]
    assert ok(env, "archive_purge", stamp=1030)[0]["text"] == "0"
    assert env.router.job(W, "archive_purge")[0]["error"] == "bad-request"


def test_user_del_deletes_every_row(env):
    # user_del deletes the user's rows in every table and no one else's.
    env.worker()
    for user in ("dora@example.org", "other@example.org"):
        new_user(env, user)
        ok(env, "roster_put", item("x@example.org", groups=["G"]), user=user, ver="1")
        ok(env, "pending_put", jid="y@example.org", user=user)
        ok(env, "last_set", since=1, user=user)
        ok(env, "offline_put", msg(1), id="o1", stamp=1, limit=10, user=user)
        ok(env, "archive_put", msg(1), id="a1", jid="x@example.org", stamp=1, text="in", user=user)
    ok(env, "user_del", user="dora@example.org")
    for table in ("users", "roster_items", "roster_groups", "roster_pending", "last_activity", "offline_messages",
                  "archive"):
        assert env.store.sql(f"SELECT DISTINCT user_id FROM {table}") == [("other@example.org",)], table
    # A new account of the same name starts empty.
    new_user(env, "dora@example.org")
    assert ok(env, "roster_get", user="dora@example.org")[1] == f"<query xmlns='{NS_R}' ver='0'/>"
    assert ok(env, "offline_get", user="dora@example.org")[1] == "<messages/>"


# ---------------------------------------------------------------------------
# Batches


class paused:
    """Stops the worker (SIGSTOP, by PID) so that jobs queue up, and lets it
    go on leaving the block: it then finds them all at once."""

    def __init__(self, worker):
        self.worker = worker

    def __enter__(self):
        os.kill(self.worker.proc.pid, signal.SIGSTOP)

    def __exit__(self, *exc):
        os.kill(self.worker.proc.pid, signal.SIGCONT)


def batch_sizes(log):
    return [int(n) for n in re.findall(r"batch of (\d+) jobs in one transaction: committed", log)]


def test_batch_of_500_offline_puts(env):
    # 500 offline_puts sent at once all succeed, answered in order, in a few
    # transactions.
    w = env.worker()
    new_user(env, "bert@example.org")
    before = batch_sizes(w.log())
    jobs = [("offline_put", msg(i), {"user": "bert@example.org", "id": f"b{i:03d}", "stamp": i, "limit": 1000})
            for i in range(500)]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    results = env.router.results(W, ids)
    assert all("error" not in hdr for hdr, _ in results), [hdr for hdr, _ in results if "error" in hdr][:3]
    assert env.store.sql("SELECT count(*) FROM offline_messages") == [("500",)]
    # Typically 256 + 244; how the burst is split depends on how fast the
    # socket hands it over, so the bound is loose: 20 jobs per transaction.
    sizes = batch_sizes(w.log())[len(before):]
    assert sum(sizes) == 500 and len(sizes) <= 25, sizes
    assert max(sizes) >= 50, sizes


def boom_trigger(store):
    """Makes every insert of an offline message whose id starts with 'bad' fail."""
    if store.backend == "sqlite":
        store.sql("CREATE TRIGGER boom BEFORE INSERT ON offline_messages WHEN NEW.id LIKE 'bad%' "
                  "BEGIN SELECT RAISE(ABORT, 'boom'); END")
    else:
        store.sql("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "IF NEW.id LIKE 'bad%' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$; "
                  "CREATE TRIGGER boom BEFORE INSERT ON offline_messages FOR EACH ROW EXECUTE FUNCTION boom()")


def test_batch_isolates_a_failing_write(env):
    # In one batch, a write whose statement fails is answered internal and
    # rolled back alone; a bad request is answered in place; the quota
    # counts the batch's own earlier inserts; the rest commit.
    w = env.worker()
    new_user(env, "bert@example.org")
    boom_trigger(env.store)
    u = {"user": "bert@example.org", "limit": 4}
    before = batch_sizes(w.log())
    jobs = [("offline_put", msg(1), {**u, "id": "ok1", "stamp": 1}),
            ("offline_put", msg(2), {**u, "id": "bad", "stamp": 2}),
            ("offline_put", msg(3), {**u, "id": "ok2", "stamp": 3}),
            ("offline_put", None, {**u, "id": "nopayload", "stamp": 4}),
            ("last_set", None, {"user": "bert@example.org", "since": 77}),
            ("offline_put", msg(5), {**u, "id": "ok3", "stamp": 5}),
            ("offline_put", msg(6), {**u, "id": "ok4", "stamp": 6}),
            ("offline_put", msg(7), {**u, "id": "full", "stamp": 7}),
            ("offline_put", msg(1), {**u, "id": "ok1", "stamp": 1})]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    errors = [hdr.get("error") for hdr, _ in env.router.results(W, ids)]
    assert errors == [None, "internal", None, "bad-request", None, None, None, "resource-constraint", None]
    assert env.store.sql("SELECT id FROM offline_messages ORDER BY stamp") == [("ok1",), ("ok2",), ("ok3",), ("ok4",)]
    assert env.store.sql("SELECT since FROM last_activity") == [("77",)]
    sizes = batch_sizes(w.log())[len(before):]
    assert sum(sizes) == 8 and len(sizes) <= 3, sizes   # the bad-request never reached the database
    assert "boom" in w.log()


# Quotes, backslashes, braces and commas: array literal syntax in PostgreSQL.
ODD = '<message type="chat"><body>a "b" \\ c\\"d {e,f} NULL</body></message>'


def test_batch_mixed_offline_and_archive_puts(env):
    # In one batch of offline_puts and archive_puts (grouped into multi-row
    # statements on PostgreSQL), every job gets the answer it would get
    # alone: unknown accounts not-found, repeats (stored or earlier in the
    # batch) no-ops even when full, the quota counted in order, and an
    # offline_del of the same user seen in its place.
    w = env.worker()
    new_user(env, "bert@example.org")
    new_user(env, "carl@example.org")
    ok(env, "offline_put", msg(0), user="bert@example.org", id="o0", stamp=0, limit=3)
    ok(env, "archive_put", msg(0), user="bert@example.org", id="a0", jid="x@example.org", stamp=0, text="in")
    b = {"user": "bert@example.org", "limit": 3}
    c = {"user": "carl@example.org", "limit": 1}
    arch = {"user": "bert@example.org", "jid": "x@example.org", "text": "out"}
    jobs = [("archive_put", msg(1), {**arch, "id": "a1", "stamp": 1}),
            ("offline_put", msg(1), {**b, "id": "o1", "stamp": 1}),
            ("archive_put", msg(1), {**arch, "user": "nobody@example.org", "id": "a1", "stamp": 1}),
            ("offline_put", msg(1), {**b, "user": "nobody@example.org", "id": "o1", "stamp": 1}),
            ("offline_put", msg(1), {**b, "id": "o1", "stamp": 1}),
            ("archive_put", msg(9), {**arch, "id": "a0", "stamp": 9}),
            ("offline_put", msg(9), {**b, "id": "o0", "stamp": 9}),
            ("offline_put", msg(2), {**b, "id": "o2", "stamp": 2}),
            ("offline_put", msg(3), {**b, "id": "o3", "stamp": 3}),
            ("offline_put", msg(1), {**b, "id": "o1", "stamp": 1}),
            ("offline_put", msg(4), {**c, "id": "c1", "stamp": 4}),
            ("offline_put", msg(5), {**c, "id": "c2", "stamp": 5}),
            ("offline_del", "c1", {"user": "carl@example.org"}),
            ("offline_put", msg(6), {**c, "id": "c3", "stamp": 6}),
            ("archive_put", ODD, {**arch, "id": "a2", "stamp": 2})]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    errors = [hdr.get("error") for hdr, _ in env.router.results(W, ids)]
    assert errors == [None, None, "not-found", "not-found", None, None, None, None, "resource-constraint", None,
                      None, "resource-constraint", None, None, None]
    assert env.store.sql("SELECT user_id, id, stamp FROM offline_messages ORDER BY user_id, id") == [
        ("bert@example.org", "o0", "0"), ("bert@example.org", "o1", "1"), ("bert@example.org", "o2", "2"),
        ("carl@example.org", "c3", "6")]
    assert env.store.sql("SELECT id, stamp, dir, xml FROM archive ORDER BY id") == [
        ("a0", "0", "in", msg(0)), ("a1", "1", "out", msg(1)), ("a2", "2", "out", ODD)]


def test_batch_failures_far_apart(env):
    # In a batch of 300 writes, failures early, in the middle and last are
    # each rolled back alone (on PostgreSQL they fall in different pipeline
    # segments and rounds); the other 296 commit.
    w = env.worker()
    new_user(env, "bert@example.org")
    boom_trigger(env.store)
    bad = {3, 70, 200, 299}
    jobs = [("offline_put", msg(i), {"user": "bert@example.org", "id": f"bad{i}" if i in bad else f"ok{i:03d}",
                                     "stamp": i, "limit": 1000}) for i in range(300)]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    errors = [hdr.get("error") for hdr, _ in env.router.results(W, ids)]
    assert [i for i, e in enumerate(errors) if e] == sorted(bad)
    assert {errors[i] for i in bad} == {"internal"}
    assert env.store.sql("SELECT count(*) FROM offline_messages") == [("296",)]
    assert len(re.findall(r"offline_put: .*boom", w.log())) == 4


def test_quota_holds_across_two_workers(env):
    # Two workers storing offline messages for one user at the same time
    # never exceed the quota together: exactly limit puts succeed.
    a, b = env.worker("storage-a"), env.worker("storage-b")
    hdr, _ = env.router.job("storage-a", "user_add", user="bert@example.org", **creds())
    assert "error" not in hdr
    jobs = {peer: [("offline_put", msg(i), {"user": "bert@example.org", "id": f"{peer}-{i}", "stamp": i,
                                            "limit": 25}) for i in range(20)] for peer in ("storage-a", "storage-b")}
    with paused(a), paused(b):
        ids = {peer: env.router.send_jobs(peer, jobs[peer]) for peer in jobs}
    errors = []
    pending = {job_id for peer_ids in ids.values() for job_id in peer_ids}
    deadline = time.monotonic() + 30
    while pending:
        msg_ = env.router.recv(max(deadline - time.monotonic(), 0))
        assert msg_ is not None, f"{len(pending)} results missing"
        if msg_[1]["op"] == "job_result":
            pending.discard(msg_[1]["job"])
            errors.append(msg_[1].get("error"))
    assert errors.count(None) == 25 and errors.count("resource-constraint") == 15, errors
    assert env.store.sql("SELECT count(*) FROM offline_messages") == [("25",)]


def test_batch_reads_see_earlier_writes_only(env):
    # A read in the middle of a burst sees the writes before it and none
    # after it; results stay in arrival order.
    w = env.worker()
    new_user(env, "bert@example.org")
    u = {"user": "bert@example.org", "limit": 100}
    jobs = [("offline_put", msg(1), {**u, "id": "x", "stamp": 1}),
            ("offline_get", None, {"user": "bert@example.org"}),
            ("offline_put", msg(2), {**u, "id": "y", "stamp": 2}),
            ("offline_del", "x", {"user": "bert@example.org"}),
            ("offline_get", None, {"user": "bert@example.org"})]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    results = env.router.results(W, ids)
    assert [r[1] for r in results] == [None, f"<messages><msg id='x' stamp='1'>{msg(1)}</msg></messages>", None,
                                       None, f"<messages><msg id='y' stamp='2'>{msg(2)}</msg></messages>"]


def test_pg_batch_retried_after_connection_loss(env):
    # A batch whose connection was dropped runs again on a new connection,
    # and every write in it succeeds.
    if env.store.backend != "postgresql":
        pytest.skip("PostgreSQL only")
    w = env.worker()
    new_user(env, "gus@example.org")
    env.store.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'parley-storage'")
    jobs = [("archive_put", msg(i), {"user": "gus@example.org", "id": f"g{i}", "jid": "x@example.org", "stamp": i,
                                     "text": "out"}) for i in range(20)]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    assert all("error" not in hdr for hdr, _ in env.router.results(W, ids))
    assert env.store.sql("SELECT count(*) FROM archive") == [("20",)]
    assert "retrying once on a new connection" in w.log()


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


# ---------------------------------------------------------------------------
# The offline quota's counter (PostgreSQL: users.offline_count, migration 007;
# SQLite counts the queue). Whatever the backend, the quota must count exactly
# what is stored now.


def counter_drift(env):
    """Accounts whose offline_count differs from their queue (PostgreSQL)."""
    if env.store.backend != "postgresql":
        return []
    return env.store.sql("SELECT user_id, offline_count, (SELECT count(*) FROM offline_messages o"
                         " WHERE o.user_id = u.user_id) FROM users u"
                         " WHERE offline_count <> (SELECT count(*) FROM offline_messages o WHERE o.user_id = u.user_id)")


def put_error(env, user, oid, limit, peer=W):
    hdr, _ = env.router.job(peer, "offline_put", msg(0), user=user, id=oid, stamp=1, limit=limit)
    return hdr.get("error")


def test_quota_exact_after_deletes(env):
    # Deleting frees exactly the places of the messages it deleted (an absent
    # id frees none); a repeat of a stored id is a no-op even when full; the
    # same holds inside one batch.
    w = env.worker()
    new_user(env, "bert@example.org")
    b = "bert@example.org"
    assert [put_error(env, b, f"o{i}", 3) for i in range(4)] == [None, None, None, "resource-constraint"]
    ok(env, "offline_del", "o0\nnope\no0", user=b)
    assert counter_drift(env) == []
    assert [put_error(env, b, i, 3) for i in ("o3", "o1", "o4")] == [None, None, "resource-constraint"]
    u = {"user": b, "limit": 3}
    jobs = [("offline_del", "o1\no2", {"user": b}),
            ("offline_put", msg(5), {**u, "id": "o5", "stamp": 5}),
            ("offline_put", msg(6), {**u, "id": "o6", "stamp": 6}),
            ("offline_put", msg(7), {**u, "id": "o7", "stamp": 7}),
            ("offline_put", msg(3), {**u, "id": "o3", "stamp": 3})]
    with paused(w):
        ids = env.router.send_jobs(W, jobs)
    errors = [hdr.get("error") for hdr, _ in env.router.results(W, ids)]
    assert errors == [None, None, None, "resource-constraint", None]
    assert env.store.sql(f"SELECT id FROM offline_messages WHERE user_id = '{b}' ORDER BY id") == [
        ("o3",), ("o5",), ("o6",)]
    assert counter_drift(env) == []


def test_counter_exact_under_two_workers(env):
    # Two workers storing and deleting one user's messages at once, with
    # overlapping deletes and the same ids put on both: the counter ends
    # equal to the queue, and every put and delete succeeds.
    a, b = env.worker("storage-a"), env.worker("storage-b")
    user = "bert@example.org"
    hdr, _ = env.router.job("storage-a", "user_add", user=user, **creds())
    assert "error" not in hdr
    for i in range(30):
        hdr, _ = env.router.job("storage-a", "offline_put", msg(i), user=user, id=f"p{i:02d}", stamp=i, limit=1000)
        assert "error" not in hdr
    u = {"user": user, "limit": 1000}
    jobs = {
        "storage-a": [("offline_put", msg(i), {**u, "id": f"a{i:02d}", "stamp": 100 + i}) for i in range(40)]
        + [("offline_del", "\n".join(f"p{i:02d}" for i in range(10)), {"user": user})],
        "storage-b": [("offline_del", "\n".join(f"p{i:02d}" for i in range(5, 15)), {"user": user})]
        + [("offline_put", msg(i), {**u, "id": f"b{i:02d}", "stamp": 200 + i}) for i in range(40)]
        + [("offline_put", msg(i), {**u, "id": f"a{i:02d}", "stamp": 100 + i}) for i in range(0, 40, 3)],
    }
    with paused(a), paused(b):
        ids = {peer: env.router.send_jobs(peer, jobs[peer]) for peer in jobs}
    pending = {job_id for peer_ids in ids.values() for job_id in peer_ids}
    errors = []
    deadline = time.monotonic() + 30
    while pending:
        m = env.router.recv(max(deadline - time.monotonic(), 0))
        assert m is not None, f"{len(pending)} results missing"
        if m[1]["op"] == "job_result":
            pending.discard(m[1]["job"])
            errors.append(m[1].get("error"))
    assert errors == [None] * len(errors)
    assert env.store.sql("SELECT count(*) FROM offline_messages") == [(str(30 - 15 + 40 + 40),)]
    assert counter_drift(env) == []


def test_user_del_resets_the_quota(env):
    # A deleted account's messages and count go with it: the same name added
    # again starts with an empty queue and its whole quota.
    env.worker()
    b = "bert@example.org"
    new_user(env, b)
    assert [put_error(env, b, f"o{i}", 2) for i in range(3)] == [None, None, "resource-constraint"]
    ok(env, "user_del", user=b)
    assert env.store.sql("SELECT count(*) FROM offline_messages") == [("0",)]
    new_user(env, b)
    assert [put_error(env, b, f"o{i}", 2) for i in range(3)] == [None, None, "resource-constraint"]
    assert counter_drift(env) == []


def test_counter_migration_counts_existing_queues(env):
    # Migration 007 starts each account's counter at its queue length, so an
    # upgrade keeps the quota exact for messages stored before it.
    if env.store.backend != "postgresql":
        pytest.skip("users.offline_count is PostgreSQL's (SQLite counts the queue)")
    old = os.path.join(env.state, "migrations-006")
    os.mkdir(old)
    src = os.path.join(REPO, "storage", "migrations")
    for f in os.listdir(src):
        if f.endswith(".sql") and int(f[:3]) <= 6:
            shutil.copy(os.path.join(src, f), old)
    conf = os.path.join(env.state, "parley.conf")
    with open(conf, encoding="utf-8") as f:
        tree = json.load(f)
    tree["storage"]["migrations_dir"] = old
    with open(conf, "w", encoding="utf-8") as f:
        json.dump(tree, f)
    w = env.worker()
    w.wait_log(r"schema at version 6 ")
    for user in ("bert@example.org", "carl@example.org", "dora@example.org"):
        new_user(env, user)
    env.store.sql("INSERT INTO offline_messages (user_id, id, stamp, xml) SELECT"
                  " CASE WHEN g <= 4 THEN 'bert@example.org' ELSE 'carl@example.org' END, 'x' || g, g, '<message/>'"
                  " FROM generate_series(1, 5) g")
    assert w.stop() == 0
    tree["storage"]["migrations_dir"] = src
    with open(conf, "w", encoding="utf-8") as f:
        json.dump(tree, f)
    w.start()
    env.router.wait_op("hello", peer="storage-1")
    assert env.store.sql("SELECT user_id, offline_count FROM users ORDER BY user_id") == [
        ("bert@example.org", "4"), ("carl@example.org", "1"), ("dora@example.org", "0")]
    assert [put_error(env, "bert@example.org", f"n{i}", 5) for i in range(2)] == [None, "resource-constraint"]
