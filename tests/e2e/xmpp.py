"""
Client helpers for the end-to-end tests: a slixmpp client that logs in to a
chosen gateway port the way a real client does (STARTTLS or direct TLS,
certificate checked against the instance's self-signed one, a chosen SASL
mechanism), and a raw socket for input no real client would send.

Every wait has a timeout: a test never hangs on a silent server.
"""
import asyncio
import logging
import pathlib
import re
import socket
import time

import slixmpp
from slixmpp.exceptions import IqError

TIMEOUT = 10  # seconds for one login, one reply, one message

STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"

# slixmpp logs a traceback-sized line for expected failures (wrong password,
# stream errors); pytest shows captured logs of failed tests only anyway.
logging.getLogger("slixmpp").setLevel(logging.WARNING)


def run(coro, timeout=60):
    """Runs one test scenario on a fresh event loop, within timeout seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class LoginFailed(Exception):
    """The login did not reach session_start; .reason says how it ended
    ("auth:<condition>", "disconnected", "no-mechanism"), .stream_errors
    lists the stream error conditions received."""

    def __init__(self, reason, stream_errors):
        super().__init__(f"login failed: {reason} (stream errors: {stream_errors or 'none'})")
        self.reason = reason
        self.stream_errors = stream_errors


class Client(slixmpp.ClientXMPP):
    """One logged-in (or logging-in) client. Received messages go to
    .messages (asyncio.Queue of slixmpp Message stanzas); stream error
    conditions to .stream_errors; .closed is set when the connection ends."""

    def __init__(self, jid, password, host, port, cafile, *, direct_tls=False,
                 mech="SCRAM-SHA-256"):
        super().__init__(jid, password, sasl_mech=mech)
        self.target = (host, port)
        self.direct_tls = direct_tls
        # The server certificate must verify: trust only the instance's
        # self-signed certificate and check it names the domain.
        self.ca_certs = pathlib.Path(cafile)
        self.ssl_context.check_hostname = True
        self.default_domain = self.boundjid.domain  # TLS server name (SNI + check)
        self.messages = asyncio.Queue()
        self.stream_errors = []
        self.auth_condition = None
        self.closed = asyncio.Event()
        self.outcome = asyncio.get_running_loop().create_future()
        for plugin in ("xep_0030", "xep_0199"):
            self.register_plugin(plugin)
        # slixmpp answers server pings itself; keepalive pings off so the
        # tests see only what they send.
        self["xep_0199"].enable_keepalive = False
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", lambda _e: self._finish(f"auth:{self.auth_condition}"))
        self.add_event_handler("no_auth", lambda _e: self._finish("no-mechanism"))
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("message", self.messages.put_nowait)

    async def get_dns_records(self, domain, port=None):
        # Connect to the chosen gateway, not to what DNS says about the domain.
        return [(domain, self.target[0], self.target[1])]

    def _finish(self, result):
        if not self.outcome.done():
            self.outcome.set_result(result)

    def _on_session_start(self, _event):
        self._finish("ok")

    def _on_failed_auth(self, stanza):
        self.auth_condition = stanza["condition"]

    def _on_stream_error(self, error):
        self.stream_errors.append(error["condition"])

    def _on_disconnected(self, _reason):
        self.closed.set()
        self._finish("disconnected" if self.auth_condition is None else f"auth:{self.auth_condition}")

    async def login(self, timeout=TIMEOUT, presence=True):
        """Connects and waits for session_start. Raises LoginFailed (auth
        failure, stream closed) or asyncio.TimeoutError."""
        self.connect(self.target, use_ssl=self.direct_tls, force_starttls=not self.direct_tls)
        try:
            result = await asyncio.wait_for(asyncio.shield(self.outcome), timeout)
        except asyncio.TimeoutError:
            self.abort_quietly()
            raise asyncio.TimeoutError(
                f"{self.boundjid.bare}: no session within {timeout} s on port {self.target[1]}") from None
        if result != "ok":
            self.abort_quietly()
            raise LoginFailed(result, self.stream_errors)
        if presence:
            self.send_presence()
        return self

    def abort_quietly(self):
        """Drops the connection now, whatever state it is in."""
        self.cancel_connection_attempt()
        if self.transport and not self.transport.is_closing():
            try:
                self.abort()
            except AttributeError:  # asyncio's SSL transport already torn down
                pass

    async def close(self, timeout=3):
        """Ends the stream (</stream:stream>) and waits for the close."""
        if self.transport:
            self.disconnect(wait=timeout)
            try:
                await asyncio.wait_for(self.closed.wait(), timeout + 1)
            except asyncio.TimeoutError:
                self.abort_quietly()
        self.cancel_connection_attempt()

    async def next_message(self, timeout=TIMEOUT, with_body=True):
        """The next received message (with a body unless with_body=False)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(f"{self.boundjid}: no message within {timeout} s")
            msg = await asyncio.wait_for(self.messages.get(), left)
            if msg["body"] or not with_body:
                return msg

    async def iq_get(self, to, child_ns, child_name="query", timeout=TIMEOUT):
        """Sends <iq type='get'><child_name xmlns=child_ns/></iq> to `to` and
        returns the reply whatever its type (no exception on type='error')."""
        iq = self.make_iq_get(ito=to)
        iq.xml.append(slixmpp.xmlstream.ET.Element(f"{{{child_ns}}}{child_name}"))
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq


async def login(instance, jid, password, gateway=0, direct_tls=False, mech="SCRAM-SHA-256",
                timeout=TIMEOUT, presence=True):
    """A Client logged in as jid on instance.gateways[gateway] (its STARTTLS
    port, or its TLS port if direct_tls)."""
    gw = instance.gateways[gateway]
    c = Client(jid, password, "127.0.0.1", gw.tls_port if direct_tls else gw.port,
               instance.cert_path, direct_tls=direct_tls, mech=mech)
    return await c.login(timeout=timeout, presence=presence)


async def exchange(a, b, tag="", timeout=TIMEOUT):
    """a and b each send the other a chat message to its full JID and check it
    arrives intact, from the right sender. Returns the two bodies."""
    body_ab = f"a->b {tag} {time.monotonic_ns()} <&> ünïcödé"
    body_ba = f"b->a {tag} {time.monotonic_ns()}"
    a.send_message(mto=b.boundjid.full, mbody=body_ab, mtype="chat")
    got = await b.next_message(timeout)
    assert got["body"] == body_ab, f"{b.boundjid} got {got['body']!r}, expected {body_ab!r}"
    assert got["from"].bare == a.boundjid.bare, f"message from {got['from']}, expected {a.boundjid.bare}"
    b.send_message(mto=a.boundjid.full, mbody=body_ba, mtype="chat")
    got = await a.next_message(timeout)
    assert got["body"] == body_ba, f"{a.boundjid} got {got['body']!r}, expected {body_ba!r}"
    assert got["from"].bare == b.boundjid.bare
    return body_ab, body_ba


# ---------------------------------------------------------------------------
# Raw socket: input no real client sends.


def stream_header(domain):
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").encode()


class RawStream:
    """A plain TCP connection to a gateway's STARTTLS port."""

    def __init__(self, host, port, timeout=TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.received = b""
        self.closed = False

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def read_until(self, marker, timeout=TIMEOUT):
        """Reads until marker (bytes) has arrived or the peer closed; returns
        everything received so far. Raises TimeoutError if neither happens."""
        deadline = time.monotonic() + timeout
        while marker not in self.received and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited {timeout} s for {marker!r}; got {self.received[-500:]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.received += chunk
        return self.received

    def open(self, domain):
        """Sends the stream header and reads the server's stream features."""
        self.send(stream_header(domain))
        return self.read_until(b"</stream:features>")

    def read_until_closed(self, timeout=TIMEOUT):
        """Reads until the server closes the connection (raises TimeoutError
        if it does not)."""
        self.read_until(b"\0never\0", timeout)
        return self.received

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stream_error_conditions(data):
    """The defined conditions inside <stream:error> in data (bytes or str),
    e.g. ["not-well-formed"]; [] if there is no stream error."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    m = re.search(r"<stream:error\b[^>]*>(.*?)</stream:error>", text, re.S)
    if not m:
        return []
    conditions = []
    for el in re.finditer(r"<([A-Za-z-]+)\b([^>]*)/?>", m.group(1)):
        name, attrs = el.group(1), el.group(2)
        if name != "text" and STREAMS_NS in attrs:
            conditions.append(name)
    return conditions
