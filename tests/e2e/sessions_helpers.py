"""
Helpers for tests/e2e/test_sessions.py: accounts, slixmpp clients with the
options the session tests need (resource, presence priority, carbons), a
round trip through the router to order events, `parleyctl sessions` rows,
and a raw asyncio XMPP client (STARTTLS + SASL PLAIN + bind by hand) for
what slixmpp cannot do: see a refused bind and bind again on the same
stream.

Every wait has a timeout.
"""
import asyncio
import base64
import re
import ssl
import time
import uuid
import xml.etree.ElementTree as ET

import parleylib
from xmpp import TIMEOUT, Client

PASSWORD = "correct horse battery staple"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def new_user(inst, prefix="u"):
    """A fresh account on inst; returns its bare JID (lower case)."""
    jid = f"{prefix}{uuid.uuid4().hex[:10]}@{inst.domain}"
    inst.add_user(jid, PASSWORD)
    return jid


# ---------------------------------------------------------------------------
# slixmpp clients


async def connect(inst, jid, gateway=0, *, priority=None, presence=True, carbons=False,
                  timeout=TIMEOUT, pool=None):
    """A Client logged in as jid (a bare JID asks the server for a resource)
    on inst.gateways[gateway]'s STARTTLS port. With presence, it sends
    available presence (with priority if given) and waits until the router
    has it. With carbons, it enables XEP-0280 and collects carbons in
    .carbons_sent / .carbons_received (queues of the forwarded messages).
    The client is appended to pool (if given) before it connects, so the
    caller can abort it whatever happens."""
    gw = inst.gateways[gateway]
    c = Client(jid, PASSWORD, "127.0.0.1", gw.port, inst.cert_path)
    c.carbons_sent = asyncio.Queue()
    c.carbons_received = asyncio.Queue()
    if pool is not None:
        pool.append(c)
    if carbons:
        c.register_plugin("xep_0280")
        c.add_event_handler("carbon_sent", lambda m: c.carbons_sent.put_nowait(carbon(m, "sent")))
        c.add_event_handler("carbon_received", lambda m: c.carbons_received.put_nowait(carbon(m, "received")))
    await c.login(timeout=timeout, presence=False)
    if carbons:
        await c["xep_0280"].enable(timeout=timeout)
    if presence:
        if priority is None:
            c.send_presence()
        else:
            c.send_presence(ppriority=priority)
        await sync(c)
    return c


def carbon(msg, what):
    """What a carbon (XEP-0280 §7) carries, read from the XML as received:
    {"wrapper_from", "wrapper_to", "from", "to", "type", "body"}; the last
    four are the forwarded message's."""
    fwd = msg.xml.find(f"{{{NS_CARBONS}}}{what}/{{urn:xmpp:forward:0}}forwarded/{{jabber:client}}message")
    assert fwd is not None, f"carbon without a forwarded message: {msg}"
    body = fwd.find("{jabber:client}body")
    return {"wrapper_from": msg["from"].full, "wrapper_to": msg["to"].full, "from": fwd.get("from"),
            "to": fwd.get("to"), "type": fwd.get("type"), "body": body.text if body is not None else None}


async def sync(c, timeout=TIMEOUT):
    """A round trip through the router on c's connection: what c sent before
    has been processed by the router when this returns (one gateway, one
    socket, in order). disco#info to the own account is answered by the
    router (the gateway answers server pings itself)."""
    reply = await c.iq_get(c.boundjid.bare, NS_DISCO_INFO, timeout=timeout)
    assert reply["type"] == "result", f"{c.boundjid}: round trip to the router failed: {reply}"


async def close_all(*clients):
    for c in clients:
        if c is not None and not c.closed.is_set():
            await c.close()


async def wait_closed(c, timeout=TIMEOUT):
    """Waits until c's TCP connection has ended."""
    try:
        await asyncio.wait_for(c.closed.wait(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{c.boundjid}: connection still open {timeout} s later "
                             f"(stream errors: {c.stream_errors})") from None


async def expect_body(c, body, timeout=TIMEOUT):
    """The next message with a body that c receives is `body`; returns it."""
    got = await c.next_message(timeout)
    assert got["body"] == body, f"{c.boundjid} got {got['body']!r} from {got['from']}, expected {body!r}"
    return got


async def send_and_expect(sender, to, receiver, tag, mtype="chat"):
    """sender sends a unique body to `to`; receiver must get it next."""
    body = f"{tag} {time.monotonic_ns()}"
    sender.send_message(mto=to, mbody=body, mtype=mtype)
    return await expect_body(receiver, body)


def no_more_messages(c):
    """Asserts nothing with a body is queued for c (use after a marker)."""
    left = []
    while not c.messages.empty():
        m = c.messages.get_nowait()
        if m["body"]:
            left.append(f"{m['from']}: {m['body']!r}")
    assert not left, f"{c.boundjid} got unexpected messages: {left}"


# ---------------------------------------------------------------------------
# parleyctl


async def sessions(inst, user=None):
    """Rows of `parleyctl sessions [user]` (dicts keyed by column name),
    run off the event loop so the clients keep reading meanwhile."""
    args = ("sessions", user) if user else ("sessions",)
    r = await asyncio.to_thread(inst.ctl, *args)
    assert r.returncode == 0, f"parleyctl {' '.join(args)}: exit {r.returncode}: {r.stderr}{r.stdout}"
    return parleylib.parse_table(r.stdout)


async def ctl(inst, *args):
    return await asyncio.to_thread(inst.ctl, *args)


async def wait_sessions(inst, user, predicate, timeout, what):
    """Polls `parleyctl sessions user` until predicate(rows) holds; returns
    the rows. Fails with `what` and the last rows after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await sessions(inst, user)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s; `parleyctl sessions {user}`: {rows}")
        await asyncio.sleep(0.1)


def login_ids(rows):
    return sorted(r["login_id"] for r in rows)


# ---------------------------------------------------------------------------
# Raw client


class RawClient:
    """A hand-driven client on asyncio streams: STARTTLS (certificate
    checked against the instance's), SASL PLAIN, then binds as asked.
    Everything received is kept in .received (text after TLS)."""

    def __init__(self, inst, gateway=0):
        self.inst = inst
        self.port = inst.gateways[gateway].port
        self.domain = inst.domain
        self.reader = self.writer = None
        self.received = ""
        self.pos = 0            # what the matches so far consumed
        self.is_eof = False
        self.ids = 0

    async def _read_more(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.is_eof:
            return False
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), left)
        except asyncio.TimeoutError:
            return False
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.is_eof = True
            return False
        self.received += chunk.decode("utf-8", "replace")
        return True

    async def expect(self, pattern, timeout=TIMEOUT):
        """Waits for regex pattern (re.S) in what arrived after the last
        match; returns the match and consumes up to its end."""
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.received, self.pos)
            if m:
                self.pos = m.end()
                return m
            if not await self._read_more(deadline):
                raise AssertionError(f"raw client on port {self.port}: no {pattern!r} within {timeout} s "
                                     f"(closed: {self.is_eof}); got {self.received[self.pos:][-600:]!r}")

    def send(self, text):
        self.writer.write(text.encode())

    def _open_stream(self):
        self.send(f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
                  "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")

    async def login(self, username, password=PASSWORD, timeout=TIMEOUT):
        """Connects, STARTTLS, PLAIN as username (the login name as sent,
        e.g. "alice" or "1#alice"), restarts the stream and waits for the
        bind feature."""
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), timeout)
        self._open_stream()
        await self.expect(r"<starttls\b[^>]*urn:ietf:params:xml:ns:xmpp-tls.*?</stream:features>", timeout)
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.expect(r"<proceed\b[^>]*/>", timeout)
        ctx = ssl.create_default_context(cafile=self.inst.cert_path)
        await asyncio.wait_for(self.writer.start_tls(ctx, server_hostname=self.domain), timeout)
        self.received, self.pos = "", 0
        self._open_stream()
        await self.expect(r"<mechanism>PLAIN</mechanism>.*?</stream:features>", timeout)
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        m = await self.expect(r"<(success|failure)\b.*?(?:/>|</\1>)", timeout)
        assert m.group(1) == "success", f"PLAIN as {username} failed: {m.group(0)}"
        self._open_stream()
        await self.expect(r"<bind\b[^>]*urn:ietf:params:xml:ns:xmpp-bind.*?</stream:features>", timeout)
        return self

    async def bind(self, resource=None, timeout=TIMEOUT):
        """Sends a bind request; returns ("result", full JID) or
        ("error", condition)."""
        self.ids += 1
        iq_id = f"bind{self.ids}"
        res = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='{iq_id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")
        m = await self.expect(rf"<iq\b[^>]*\bid='{iq_id}'[^>]*?(?:/>|>.*?</iq>)", timeout)
        iq = ET.fromstring(m.group(0))
        if iq.get("type") == "result":
            jid = iq.find("{urn:ietf:params:xml:ns:xmpp-bind}bind/{urn:ietf:params:xml:ns:xmpp-bind}jid")
            assert jid is not None and jid.text, f"bind result without a JID: {m.group(0)}"
            return "result", jid.text
        assert iq.get("type") == "error", m.group(0)
        err = iq.find("error")
        assert err is not None, f"iq error without <error/>: {m.group(0)}"
        conds = [el.tag.split("}")[1] for el in err if el.tag.startswith("{" + NS_STANZAS + "}")
                 and not el.tag.endswith("}text")]
        assert len(conds) == 1, f"not exactly one error condition: {m.group(0)}"
        return "error", conds[0]

    async def expect_message(self, body, timeout=TIMEOUT):
        """Waits for a <message/> carrying body (plain text, no escaping)."""
        return await self.expect(rf"<message\b[^>]*>(?:(?!</message>).)*<body>{re.escape(body)}</body>.*?</message>",
                                 timeout)

    def is_open(self):
        return not self.is_eof and "</stream:stream>" not in self.received

    async def still_open(self, seconds=0.3):
        """Reads for `seconds`; true if the server neither closed the stream
        nor the connection meanwhile."""
        deadline = time.monotonic() + seconds
        while await self._read_more(deadline):
            pass
        return self.is_open()

    def close(self):
        if self.writer is not None:
            self.writer.close()
