"""
End-to-end foundation: real processes (router, two storage workers, two
gateways) on SQLite and on PostgreSQL, real XMPP clients (slixmpp) over
STARTTLS and direct TLS, malformed input over a raw socket, parleyctl, the
launcher behind `make run`, and the example configuration's completeness.

Every test asserts on what was received; every wait has a timeout.
"""
import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

import parleylib
from conftest import BIN, REPO
from xmpp import (LoginFailed, RawStream, exchange, login, run, stream_error_conditions)

BACKENDS = ["sqlite", "postgresql"]
MAX_STANZA = 16384  # gateway.max_stanza_bytes in these instances
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, parley_module):
    """One instance per backend, shared by the tests that leave it as they found it."""
    return parley_module(backend=request.param, gateway_max_stanza_bytes=MAX_STANZA)


def new_user(inst, prefix="u"):
    jid = f"{prefix}{uuid.uuid4().hex[:10]}@{inst.domain}"
    inst.add_user(jid, PASSWORD)
    return jid


async def silence(client, seconds):
    """Asserts client receives no message with a body for `seconds`."""
    try:
        msg = await client.next_message(timeout=seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"{client.boundjid} unexpectedly got {msg['body'][:80]!r} from {msg['from']}")


# ---------------------------------------------------------------------------
# Login and messaging


# Two users on two different gateway processes log in over STARTTLS with
# SCRAM-SHA-256 and exchange messages both ways.
def test_two_gateways_exchange_messages(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")

    async def scenario():
        alice = await login(server, alice_jid, PASSWORD, gateway=0)
        bob = await login(server, bob_jid, PASSWORD, gateway=1)
        for c, jid in ((alice, alice_jid), (bob, bob_jid)):
            assert c.boundjid.bare == jid and c.boundjid.resource, f"bound {c.boundjid}"
            assert c.transport.get_extra_info("ssl_object") is not None, "stream is not encrypted"
            assert c["feature_mechanisms"].mech.name == "SCRAM-SHA-256"
        await exchange(alice, bob, "first")
        await exchange(alice, bob, "second")
        full = (alice.boundjid.full, bob.boundjid.full)
        await alice.close()
        await bob.close()
        return full

    alice_full, bob_full = run(scenario())
    assert alice_full != bob_full


# parleyctl sessions shows each session on the gateway that holds it.
def test_sessions_lists_gateway_of_each_login(server):
    jid = new_user(server, "sess")

    async def scenario():
        c = await login(server, jid, PASSWORD, gateway=1)
        r = server.ctl("sessions", jid)
        await c.close()
        return c.boundjid.full, r

    full, r = run(scenario())
    assert r.returncode == 0, r.stderr
    rows = [row for row in parleylib.parse_table(r.stdout) if full in row.values()]
    assert rows, f"{full} not in:\n{r.stdout}"
    assert "gateway-2" in rows[0].values(), f"session not shown on gateway-2:\n{r.stdout}"


# Direct TLS on the TLS port works, and talks to a STARTTLS user.
def test_direct_tls_login(server):
    a_jid, b_jid = new_user(server, "tls"), new_user(server, "stl")

    async def scenario():
        a = await login(server, a_jid, PASSWORD, gateway=1, direct_tls=True)
        b = await login(server, b_jid, PASSWORD, gateway=0)
        ssl_obj = a.transport.get_extra_info("ssl_object")
        assert ssl_obj is not None and ssl_obj.version() in ("TLSv1.2", "TLSv1.3"), ssl_obj
        assert "starttls" not in a.features, "STARTTLS used on the direct-TLS port"
        await exchange(a, b, "tls")
        await a.close()
        await b.close()

    run(scenario())


# The other mechanisms the gateway offers over TLS also log in.
@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "PLAIN"])
def test_other_mechanisms_log_in(server, mech):
    jid = new_user(server, "mech")

    async def scenario():
        c = await login(server, jid, PASSWORD, gateway=0, mech=mech)
        assert c["feature_mechanisms"].mech.name == mech
        await c.close()

    run(scenario())


# A wrong password, and an unknown user, fail with <not-authorized/>.
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_wrong_password_fails(server, mech):
    jid = new_user(server, "wrong")

    async def scenario():
        for who, password in ((jid, PASSWORD + "x"), (f"nobody{uuid.uuid4().hex[:8]}@{server.domain}", PASSWORD)):
            with pytest.raises(LoginFailed) as failure:
                await login(server, who, password, gateway=0, mech=mech)
            assert failure.value.reason == "auth:not-authorized", (who, failure.value)
        ok = await login(server, jid, PASSWORD, gateway=0, mech=mech)  # the right one still works
        await ok.close()

    run(scenario())


# A user added with parleyctl can log in, is listed, and after `user del`
# can no longer log in.
def test_user_added_with_parleyctl(server):
    jid = f"ctl{uuid.uuid4().hex[:10]}@{server.domain}"
    r = server.ctl("user", "list")
    assert r.returncode == 0 and jid not in r.stdout.split()
    server.add_user(jid, "s3cret pass")
    listed = server.ctl("user", "list")
    assert listed.returncode == 0 and jid in listed.stdout.split(), listed.stdout

    async def scenario():
        c = await login(server, jid, "s3cret pass", gateway=1)
        await c.close()

    run(scenario())
    r = server.ctl("user", "del", jid)
    assert r.returncode == 0, r.stderr
    assert jid not in server.ctl("user", "list").stdout.split()

    async def after_delete():
        with pytest.raises(LoginFailed) as failure:
            await login(server, jid, "s3cret pass", gateway=1)
        assert failure.value.reason == "auth:not-authorized"

    run(after_delete())


# ---------------------------------------------------------------------------
# Malformed and hostile input


MALFORMED = {
    "mismatched tag": b"<message to='x@localhost'><body>hi</bdy></message>",
    "duplicate attribute": b"<message to='a@localhost' to='b@localhost'/>",
    "unquoted attribute": b"<message to=x@localhost><body>hi</body></message>",
    "binary garbage": b"<message>\x00\x01\x02</message>",
}


# Malformed XML gets <not-well-formed/> and the connection closes, while two
# logged-in users on both gateways keep chatting.
@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_malformed_xml_closes_only_that_stream(server, what):
    a_jid, b_jid = new_user(server, "mala"), new_user(server, "malb")

    async def scenario():
        a = await login(server, a_jid, PASSWORD, gateway=0)
        b = await login(server, b_jid, PASSWORD, gateway=1)
        await exchange(a, b, "before")
        with RawStream("127.0.0.1", server.gateways[0].port) as raw:
            features = raw.open(server.domain)
            assert b"starttls" in features, features
            raw.send(MALFORMED[what])
            data = await asyncio.to_thread(raw.read_until_closed)
        assert stream_error_conditions(data) == ["not-well-formed"], data[-400:]
        assert data.rstrip().endswith(b"</stream:stream>"), f"stream not closed: {data[-200:]!r}"
        await exchange(a, b, "after")
        await a.close()
        await b.close()

    run(scenario())


# A stanza before authentication gets <not-authorized/> and is not delivered.
def test_stanza_before_auth_not_authorized(server):
    b_jid = new_user(server, "pre")

    async def scenario():
        b = await login(server, b_jid, PASSWORD, gateway=1)
        with RawStream("127.0.0.1", server.gateways[0].port) as raw:
            raw.open(server.domain)
            raw.send(f"<message to='{b_jid}' type='chat'><body>sneaky</body></message>")
            data = await asyncio.to_thread(raw.read_until_closed)
        assert stream_error_conditions(data) == ["not-authorized"], data[-400:]
        await silence(b, 1.0)
        await b.close()

    run(scenario())


# An over-size stanza from a logged-in client gets <policy-violation/>;
# nothing of it is delivered and other users carry on.
def test_oversize_stanza_policy_violation(server):
    a_jid, b_jid = new_user(server, "big"), new_user(server, "rcv")

    async def scenario():
        a = await login(server, a_jid, PASSWORD, gateway=0)
        b = await login(server, b_jid, PASSWORD, gateway=1)
        body = "x" * (MAX_STANZA + 1024)
        a.send_raw(f"<message to='{b.boundjid.full}' type='chat'><body>{body}</body></message>")
        await asyncio.wait_for(a.closed.wait(), 10)
        assert a.stream_errors == ["policy-violation"], a.stream_errors
        await silence(b, 1.0)
        again = await login(server, a_jid, PASSWORD, gateway=0)
        await exchange(again, b, "after-oversize")
        # Just under the limit still goes through.
        small = "y" * (MAX_STANZA - 1024)
        again.send_message(mto=b.boundjid.full, mbody=small, mtype="chat")
        got = await b.next_message()
        assert got["body"] == small
        await again.close()
        await b.close()

    run(scenario())


# ---------------------------------------------------------------------------
# Server-answered iqs


def test_ping_to_server_answered(server):
    jid = new_user(server, "ping")

    async def scenario():
        c = await login(server, jid, PASSWORD)
        reply = await c.iq_get(server.domain, "urn:xmpp:ping", "ping")
        await c.close()
        return reply

    reply = run(scenario())
    assert reply["type"] == "result", reply
    assert reply["from"] == server.domain or reply["from"] == "", reply["from"]


def test_roster_get_answered_empty(server):
    jid = new_user(server, "roster")

    async def scenario():
        c = await login(server, jid, PASSWORD)
        reply = await c.iq_get(None, "jabber:iq:roster")
        await c.close()
        return reply

    reply = run(scenario())
    assert reply["type"] == "result", reply
    query = reply.xml.find("{jabber:iq:roster}query")
    assert query is not None, f"no roster query in {reply}"
    assert len(list(query)) == 0, f"new account has roster items: {reply}"


def test_disco_info_on_server(server):
    jid = new_user(server, "disco")

    async def scenario():
        c = await login(server, jid, PASSWORD)
        reply = await c.iq_get(server.domain, "http://jabber.org/protocol/disco#info")
        await c.close()
        return reply

    reply = run(scenario())
    assert reply["type"] == "result", reply
    ns = "http://jabber.org/protocol/disco#info"
    query = reply.xml.find(f"{{{ns}}}query")
    assert query is not None, reply
    identities = [(i.get("category"), i.get("type")) for i in query.findall(f"{{{ns}}}identity")]
    features = {f.get("var") for f in query.findall(f"{{{ns}}}feature")}
    assert ("server", "im") in identities, identities
    assert {ns, "urn:xmpp:ping"} <= features, features


# RFC 6120 §8.4: an iq the server does not understand gets service-unavailable.
def test_unknown_iq_to_server_service_unavailable(server):
    jid = new_user(server, "unk")

    async def scenario():
        c = await login(server, jid, PASSWORD)
        reply = await c.iq_get(server.domain, "urn:example:no-such-thing")
        await c.close()
        return reply

    reply = run(scenario())
    assert reply["type"] == "error", reply
    assert reply["error"]["condition"] == "service-unavailable", reply


# ---------------------------------------------------------------------------
# Operations


# parleyctl status lists the router, both gateways and both workers, with
# the PIDs we started.
def test_status_lists_every_process(server):
    rows = server.status()
    by_name = {r.get("name"): r for r in rows}
    routers = [r for r in rows if r.get("role") == "router"]
    assert len(routers) == 1 and routers[0]["pid"] == str(server.router.pid), rows
    for proc, role in [(g.proc, "gateway") for g in server.gateways] + [(s, "storage") for s in server.storage]:
        row = by_name.get(proc.name)
        assert row is not None, f"{proc.name} not listed: {rows}"
        assert row["role"] == role and row["pid"] == str(proc.pid), row
    assert len(rows) == 5, rows


# Killing one storage worker (SIGKILL) does not stop logins, nor does
# restarting it; then the other worker alone serves them.
@pytest.mark.parametrize("backend", BACKENDS)
def test_logins_survive_storage_worker_loss(parley, backend):
    inst = parley(backend=backend)
    jid = new_user(inst, "st")

    async def log_in_and_out(gateway):
        c = await login(inst, jid, PASSWORD, gateway=gateway, timeout=15)
        await c.close()

    inst.kill("storage-1")
    run(log_in_and_out(0))  # only storage-2 is alive
    inst.start("storage-1")
    inst.wait_ready()
    run(log_in_and_out(1))
    inst.kill("storage-2")
    run(log_in_and_out(1))  # only the restarted storage-1 is alive
    names = {r.get("name") for r in inst.status()}
    assert "storage-1" in names
    inst.start("storage-2")
    inst.wait_ready()
    run(log_in_and_out(0))
    codes = inst.stop()
    assert all(rc == 0 for rc in codes.values()), f"unclean exit on SIGTERM: {codes}"


# Every process exits 0 on SIGTERM; parleyctl against a stopped router
# exits 2 with a message, within its timeout.
def test_parleyctl_without_router(parley):
    inst = parley(gateways=1, storage=1)
    assert inst.kill("router", signal.SIGTERM) == 0, "router did not exit 0 on SIGTERM"
    started = time.monotonic()
    r = inst.ctl("status", timeout_s=1)
    elapsed = time.monotonic() - started
    assert r.returncode == 2, f"exit {r.returncode}: {r.stdout}{r.stderr}"
    assert "router" in r.stderr.lower(), f"unclear message: {r.stderr!r}"
    assert elapsed < 5, f"parleyctl -t 1 took {elapsed:.1f} s"
    codes = inst.stop()
    assert all(rc == 0 for rc in codes.values()), f"unclean exit on SIGTERM: {codes}"


# ---------------------------------------------------------------------------
# The launcher behind `make run`


class Launcher:
    def __init__(self, conf, state):
        self.proc = subprocess.Popen(
            [os.path.join(REPO, "deploy", "parley-launch"), "--config", conf, "--state", state,
             "--demo", "--gateways", "2", "--storage", "1", "--bin", BIN],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = []
        self.banner = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            text = line.decode("utf-8", "replace")
            self.output.append(text)
            if "Parley is running" in text:
                self.banner.set()

    def text(self):
        return "".join(self.output)

    def wait_banner(self, timeout=25):
        if not self.banner.wait(timeout):
            self.kill()
            pytest.fail(f"no banner within {timeout} s:\n{self.text()[-3000:]}")
        time.sleep(0.3)  # the rest of the banner

    def child_pids(self):
        m = re.search(r"started router \(pid (\d+)\), (.*)", self.text())
        assert m, self.text()
        return [int(m.group(1))] + [int(p) for p in re.findall(r"\(pid (\d+)\)", m.group(2))]

    def terminate(self, timeout=10):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"parley-launch did not stop within {timeout} s:\n{self.text()[-3000:]}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (the launcher may not have reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# parley-launch --demo starts everything, creates demo@domain with a
# password kept in STATE/demo-password, prints how to connect, stops every
# child on SIGTERM and exits 0; a second run keeps the account.
def test_launcher_demo(tmp_path):
    port, tls_port = parleylib.free_port(), parleylib.free_port()
    conf = tmp_path / "dev.conf"
    conf.write_text("// test config\n" + json.dumps({
        "domain": "localhost",
        "gateway": {"starttls_port": port, "tls_port": tls_port, "auth_fail_delay_ms": 100}}))
    state = tempfile.mkdtemp(prefix="p", dir="/tmp")
    passwords = []
    try:
        for round_ in (1, 2):
            launcher = Launcher(str(conf), state)
            try:
                launcher.wait_banner()
                out = launcher.text()
                pw_file = os.path.join(state, "demo-password")
                assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
                password = open(pw_file).read().strip()
                passwords.append(password)
                assert password in out and "demo@localhost" in out, out
                assert f"{port}" in out, "banner does not say the port"
                assert stat.S_IMODE(os.stat(os.path.join(state, "run")).st_mode) == 0o700
                assert os.path.exists(os.path.join(state, "tls", "cert.pem"))
                pids = launcher.child_pids()
                assert len(pids) == 4, pids

                class Inst:  # what xmpp.login needs
                    domain = "localhost"
                    cert_path = os.path.join(state, "tls", "cert.pem")
                    gateways = [type("G", (), {"port": port, "tls_port": tls_port})]

                async def scenario():
                    c = await login(Inst, "demo@localhost", password)
                    await c.close()

                run(scenario())
            finally:
                rc = launcher.terminate()
            assert rc == 0, f"round {round_}: exit {rc}\n{launcher.text()[-3000:]}"
            deadline = time.monotonic() + 3
            while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(pid_alive(p) for p in pids), f"children left running: {pids}"
        assert passwords[0] == passwords[1], "the second run replaced the demo password"
    finally:
        subprocess.run(["rm", "-rf", state], check=False)


# The launcher refuses to start on a port already in use.
def test_launcher_refuses_busy_port(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        conf = tmp_path / "busy.conf"
        conf.write_text(json.dumps({"gateway": {"starttls_port": busy, "tls_port": 0}}))
        state = tempfile.mkdtemp(prefix="p", dir="/tmp")
        try:
            r = subprocess.run([os.path.join(REPO, "deploy", "parley-launch"), "--config", str(conf),
                                "--state", state, "--bin", BIN], capture_output=True, text=True,
                               timeout=30, check=False)
        finally:
            subprocess.run(["rm", "-rf", state], check=False)
    assert r.returncode == 1 and f"{busy}" in r.stderr and "in use" in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# Configuration documentation


OPTION_RE = re.compile(
    r'\{\s*"([a-z_.]+)",\s*OPT_(\w+),\s*O\([^)]*\),\s*("(?:[^"\\]|\\.)*"|NULL|[A-Z_]+),'
    r'\s*(-?\d+),\s*(-?\d+),\s*("[^"]*"|NULL)\s*\}')


def config_table():
    """The options table of common/config.c: {path: (type, default, min, max, choices)}."""
    with open(os.path.join(REPO, "common", "config.c"), encoding="utf-8") as f:
        src = f.read()
    table = {}
    for m in OPTION_RE.finditer(src):
        path, typ, dflt, lo, hi, choices = m.groups()
        dflt = json.loads(dflt) if dflt.startswith('"') else (None if dflt == "NULL" else dflt)
        table[path] = (typ, dflt, int(lo), int(hi), json.loads(choices) if choices != "NULL" else None)
    block = src.split("static const struct option options[] = {", 1)[1].split("\n};", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.strip().startswith("{")]
    assert len(table) == len(rows), "config.c has option rows this test cannot read: update OPTION_RE"
    return table


def documented_options(path):
    """{path: (json value text, the comment above it)} from an example file."""
    entries, stack, comment = {}, [], []
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if s.startswith("//"):
            comment.append(s[2:].strip())
            continue
        m = re.match(r'"(\w+)"\s*:\s*\{\s*$', s)
        if m:
            stack.append(m.group(1))
            comment = []
            continue
        m = re.match(r'"(\w+)"\s*:\s*(.+?),?\s*$', s)
        if m:
            entries[".".join(stack + [m.group(1)])] = (m.group(2), " ".join(comment))
            comment = []
            continue
        if s.startswith("}") and stack:
            stack.pop()
        comment = []
    return entries


def check_value(path, spec, value):
    typ, _dflt, lo, hi, choices = spec
    if typ == "STR":
        assert isinstance(value, str), path
    elif typ == "INT":
        assert isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi, (path, value)
    elif typ == "BOOL":
        assert isinstance(value, bool), path
    elif typ == "ENUM":
        assert value in choices.split("|"), (path, value)
    else:  # a structured option (e.g. OPT_DEVICE_CLASSES): a JSON object
        assert isinstance(value, dict), (path, value)


def flatten(tree, table, prefix=""):
    """(path, value) of each option set in tree; an object is a section
    unless the table says the path itself is an option."""
    for k, v in tree.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in table:
            yield from flatten(v, table, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def loads_with_real_parser(path):
    """parleyctl loads the file with common/config.c before anything else:
    a configuration error is reported as "parleyctl: configuration: ..."."""
    with tempfile.TemporaryDirectory(prefix="p", dir="/tmp") as cwd:
        r = subprocess.run([os.path.join(BIN, "parleyctl"), "-c", path, "-t", "0.2", "status"], cwd=cwd,
                           capture_output=True, text=True, timeout=10, check=False)
    assert "configuration" not in r.stderr, r.stderr


# deploy/parley.conf.example documents every option of config.c with its
# default (and range), and holds only valid values.
def test_example_config_documents_every_option():
    table = config_table()
    assert "domain" in table and "storage.backend" in table and len(table) >= 30
    example = os.path.join(REPO, "deploy", "parley.conf.example")
    docs = documented_options(example)
    assert set(docs) == set(table), (f"undocumented: {sorted(set(table) - set(docs))}; "
                                     f"unknown: {sorted(set(docs) - set(table))}")
    for path, (typ, dflt, lo, hi, _choices) in table.items():
        _value, comment = docs[path]
        assert len(comment) > 20, f"{path}: no documentation"
        if typ in ("STR", "ENUM"):
            if dflt is not None and not re.fullmatch(r"[A-Z_]+", str(dflt)):
                assert f'default: "{dflt}"' in comment, f"{path}: default {dflt!r} not stated: {comment}"
            else:
                assert "default:" in comment, path
        elif typ == "INT":
            assert re.search(rf"default: {dflt}(?![\w.])", comment), f"{path}: default {dflt} not stated: {comment}"
            assert re.search(rf"(?<![\d-]){lo}\.\.{hi}(?!\d)", comment), \
                f"{path}: range {lo}..{hi} not stated: {comment}"
        elif typ == "BOOL":
            assert re.search(rf"default: {dflt}(?!\w)", comment), f"{path}: default {dflt} not stated"
        else:
            assert "default:" in comment, f"{path}: default not stated"
    tree = parleylib.load_config(example)
    for path, value in flatten(tree, table):
        check_value(path, table[path], value)
    loads_with_real_parser(example)


# The dev config of `make run` uses only known options with valid values.
def test_dev_config_is_valid():
    table = config_table()
    dev = os.path.join(REPO, "deploy", "parley.conf.dev")
    tree = parleylib.load_config(dev)
    for path, value in flatten(tree, table):
        assert path in table, f"unknown option {path}"
        check_value(path, table[path], value)
    loads_with_real_parser(dev)
    assert tree["domain"] == "localhost" and tree["storage"]["backend"] == "sqlite"
    assert (tree["gateway"]["starttls_port"], tree["gateway"]["tls_port"]) == (5222, 5223)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
