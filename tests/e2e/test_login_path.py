"""
End-to-end: what the login fast paths must keep (gateway/tls.c H1-H3,
gateway/conn.c reads, router/roster.c, router/iq.c).

- TLS reads ahead (H2): several records that arrive in one TCP segment are
  all handled, during the login and after it, although the socket signals
  them once. The client here drives TLS through memory BIOs, so each
  ssl write is one record and the test decides what shares a segment.
- No session resumption (H1): the server sends no TLS 1.3 session ticket.
- A ping to one's own account goes through the router and is answered.
- A new account's roster: the empty roster from storage has version 0,
  and a get with that version is the empty result (RFC 6121 §2.6.3).

Every wait has a timeout.
"""
import base64
import socket
import ssl
import time
import uuid

import pytest

from raw_client import NS_BIND, NS_CLIENT, NS_PING, NS_SASL, NS_STREAMS, NS_TLS, describe, tag
from xmpp import login, run

import xml.etree.ElementTree as ET

PASSWORD = "correct horse battery staple"
TIMEOUT = 10
NS_ROSTER = "jabber:iq:roster"


@pytest.fixture(scope="module")
def server(parley_module):
    return parley_module(gateways=1)


def new_user(inst, prefix="u"):
    jid = f"{prefix}{uuid.uuid4().hex[:10]}@{inst.domain}"
    inst.add_user(jid, PASSWORD)
    return jid


class BioClient:
    """STARTTLS through ssl.MemoryBIO: send_records() puts several TLS
    records into one sendall()."""

    def __init__(self, inst):
        self.domain = inst.domain
        self.sock = socket.create_connection(("127.0.0.1", inst.gateways[0].port), timeout=TIMEOUT)
        self.plain = b""
        self.tls = None
        self._parser()

    def _parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.elements = []

    def _recv(self, deadline):
        self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        assert data, "the server closed the connection"
        if self.tls is None:
            self._feed(data)
            return
        self.inb.write(data)
        if not self.tls_done:
            return
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            self._feed(chunk)

    def _feed(self, data):
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            self.depth += 1 if event == "start" else -1
            if event == "end" and self.depth == 1:
                self.elements.append(el)

    def expect(self, pred, what):
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, el in enumerate(self.elements):
                if pred(el):
                    return self.elements.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what}; got {[describe(e) for e in self.elements]}")
            self._recv(deadline)

    def expect_tag(self, t):
        return self.expect(lambda el: el.tag == t, t)

    def start_tls(self):
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.tls = ctx.wrap_bio(self.inb, self.outb, server_hostname=self.domain)
        self.tls_done = False
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outb.read())
                assert time.monotonic() < deadline, "TLS handshake timed out"
                self._recv(deadline)
        self.sock.sendall(self.outb.read())
        self.tls_done = True
        self._parser()

    def send_records(self, *parts):
        """Each part one TLS record, all of them in one TCP write."""
        for p in parts:
            self.tls.write(p.encode())
        self.sock.sendall(self.outb.read())

    def close(self):
        self.sock.close()


def header(domain):
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
            f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>")


def is_iq(id_):
    return lambda el: el.tag == tag(NS_CLIENT, "iq") and el.get("id") == id_


# H2: records that come together are all read, at every step of a login.
def test_tls_records_in_one_segment_all_handled(server):
    jid = new_user(server, "bio")
    local = jid.split("@", 1)[0]
    c = BioClient(server)
    try:
        c.sock.sendall(header(server.domain).encode())
        c.expect_tag(tag(NS_STREAMS, "features"))
        c.sock.sendall(f"<starttls xmlns='{NS_TLS}'/>".encode())
        c.expect_tag(tag(NS_TLS, "proceed"))
        c.start_tls()
        token = base64.b64encode(b"\0" + local.encode() + b"\0" + PASSWORD.encode()).decode()
        # Header and auth in two records, one segment.
        c.send_records(header(server.domain), f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        c.expect_tag(tag(NS_SASL, "success"))
        c._parser()
        c.send_records(header(server.domain),
                       f"<iq type='set' id='b'><bind xmlns='{NS_BIND}'><resource>r</resource></bind></iq>")
        bound = c.expect(is_iq("b"), "bind result")
        assert bound.get("type") == "result", describe(bound)
        # After the login: five iqs, five records, one segment; each must be
        # answered, the last ones with nothing new on the socket.
        c.send_records(*(f"<iq type='get' id='p{i}' to='{jid}'><ping xmlns='{NS_PING}'/></iq>"
                         for i in range(5)))
        for i in range(5):
            reply = c.expect(is_iq(f"p{i}"), f"ping p{i} reply")
            assert reply.get("type") == "result", describe(reply)
        # H1: no session ticket came with all that.
        assert c.tls.session is None or not c.tls.session.has_ticket, "the server sent a session ticket"
        assert not c.tls.session_reused
    finally:
        c.close()


# A ping to one's own bare JID is answered by the router on the account's
# behalf (RFC 6121 §8.5.2.1.1), in order after what the client sent before.
def test_ping_to_own_account_answered(server):
    jid = new_user(server, "ping")

    async def scenario():
        c = await login(server, jid, PASSWORD)
        try:
            return await c.iq_get(jid, NS_PING, "ping")
        finally:
            await c.close()

    reply = run(scenario())
    assert reply["type"] == "result", reply


# Q1 with the empty roster straight from storage: version 0, and a get
# that names version 0 is answered with an empty result.
def test_new_account_roster_version_zero(server):
    jid = new_user(server, "ver")

    async def scenario():
        c = await login(server, jid, PASSWORD)
        try:
            first = await c.iq_get(None, NS_ROSTER)
            iq = c.make_iq_get()
            q = ET.SubElement(iq.xml, f"{{{NS_ROSTER}}}query")
            q.set("ver", "0")
            second = await iq.send(timeout=TIMEOUT)
            return first, second
        finally:
            await c.close()

    first, second = run(scenario())
    assert first["type"] == "result", first
    query = first.xml.find(f"{{{NS_ROSTER}}}query")
    assert query is not None and query.get("ver") == "0" and len(list(query)) == 0, first
    assert second["type"] == "result" and len(list(second.xml)) == 0, second
