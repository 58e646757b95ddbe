"""
A raw XMPP client for tests that need exact control of the bytes on the
wire (stream management, idle pings): STARTTLS with the instance's
certificate checked, SASL PLAIN, resource binding, then only what the test
sends. Received top-level elements are parsed incrementally
(xml.etree.XMLPullParser) and kept in order; expect() takes the first one
matching a condition, waiting for it within a timeout.

With count_stanzas() on, the client counts the stanzas it receives the way
an XEP-0198 client does (self.h_in), and with auto_ack it answers the
server's <r/> with <a h/> by itself.

Every wait has a timeout: a test never hangs on a silent server.
"""
import base64
import socket
import ssl
import struct
import time
import xml.etree.ElementTree as ET

TIMEOUT = 10

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SM = "urn:xmpp:sm:3"
NS_PING = "urn:xmpp:ping"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"

STANZA_TAGS = {f"{{{NS_CLIENT}}}{n}" for n in ("message", "presence", "iq")}


def tag(ns, name):
    return f"{{{ns}}}{name}"


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def describe(el):
    """Short text of an element for assertion messages."""
    return ET.tostring(el, encoding="unicode")[:300]


class StreamEnded(Exception):
    """The server closed the stream or the connection while we waited."""


class RawClient:
    """One client connection to a gateway's STARTTLS port."""

    def __init__(self, instance, gateway=0, timeout=TIMEOUT):
        self.domain = instance.domain
        self.cafile = instance.cert_path
        self.sock = socket.create_connection(("127.0.0.1", instance.gateways[gateway].port), timeout=timeout)
        self.pending = []          # received top-level elements not yet taken by expect()
        self.received = []         # every top-level element received, in order
        self.stream_errors = []    # defined conditions of <stream:error> received
        self.closed = False        # the server closed the connection
        self.stream_closed = False # </stream:stream> received
        self.h_in = 0              # stanzas received while counting (XEP-0198)
        self.counting = False
        self.auto_ack = False
        self.full = None
        self._new_parser()

    # -- low level

    def _new_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _on_element(self, el):
        if self.counting and el.tag in STANZA_TAGS:
            self.h_in = (self.h_in + 1) % 2**32
        if el.tag == tag(NS_STREAMS, "error"):
            self.stream_errors += [c.tag.split("}")[1] for c in el
                                   if c.tag.startswith(f"{{{NS_STREAM_ERRORS}}}") and not c.tag.endswith("}text")]
        self.received.append(el)
        self.pending.append(el)
        if self.auto_ack and el.tag == tag(NS_SM, "r"):
            self.send(f"<a xmlns='{NS_SM}' h='{self.h_in}'/>")

    def _read(self, timeout):
        """Reads once (up to timeout seconds) and parses what came."""
        if self.closed:
            raise StreamEnded("connection closed")
        self.sock.settimeout(max(timeout, 0.01))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self._on_element(el)
                elif self.depth == 0:
                    self.stream_closed = True

    def expect(self, match, timeout=TIMEOUT, what=None):
        """Returns (and takes) the first received element for which match(el)
        is true (match may also be a tag string), reading until it arrives.
        Raises TimeoutError, or StreamEnded if the connection ends first."""
        pred = (lambda el: el.tag == match) if isinstance(match, str) else match
        deadline = time.monotonic() + timeout
        while True:
            for i, el in enumerate(self.pending):
                if pred(el):
                    del self.pending[i]
                    return el
            left = deadline - time.monotonic()
            if self.closed:
                raise StreamEnded(f"connection closed while waiting for {what or match}; "
                                  f"stream errors {self.stream_errors}; got {[describe(e) for e in self.pending]}")
            if left <= 0:
                raise TimeoutError(f"no {what or match} within {timeout} s; got {[describe(e) for e in self.pending]}")
            self._read(left)

    def collect(self, seconds):
        """Reads for `seconds` (or until the connection ends) and returns
        the elements that arrived meanwhile (they stay pending too)."""
        start = len(self.received)
        deadline = time.monotonic() + seconds
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._read(left)
        return self.received[start:]

    def wait_closed(self, timeout=TIMEOUT):
        """Reads until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open after {timeout} s")
            self._read(left)

    def _open_stream(self):
        self.send(f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
                  f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>")
        return self.expect(tag(NS_STREAMS, "features"))

    # -- login

    def login(self, jid, password, resource=None, bind=True):
        """STARTTLS, SASL PLAIN as jid, and (if bind) resource binding.
        Returns the features offered after authentication."""
        features = self._open_stream()
        assert features.find(tag(NS_TLS, "starttls")) is not None, describe(features)
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.expect(tag(NS_TLS, "proceed"))
        ctx = ssl.create_default_context(cafile=self.cafile)
        ctx.check_hostname = True
        timeout = self.sock.gettimeout()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.domain)
        self.sock.settimeout(timeout)
        self._new_parser()
        self._open_stream()
        local = jid.split("@", 1)[0]
        token = base64.b64encode(b"\0" + local.encode() + b"\0" + password.encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        self.expect(tag(NS_SASL, "success"), what="SASL success")
        self._new_parser()
        features = self._open_stream()
        if bind:
            self.bind(resource)
        return features

    def bind(self, resource=None):
        res = f"<resource>{xml_escape(resource)}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        reply = self.expect(lambda el: el.tag == tag(NS_CLIENT, "iq") and el.get("id") == "bind1", what="bind reply")
        assert reply.get("type") == "result", describe(reply)
        self.full = reply.find(f"{tag(NS_BIND, 'bind')}/{tag(NS_BIND, 'jid')}").text
        return self.full

    # -- XEP-0198

    def count_stanzas(self, auto_ack=True):
        """From now on count received stanzas (h) and, with auto_ack, answer
        the server's <r/>."""
        self.counting = True
        self.auto_ack = auto_ack
        self.h_in = 0

    def enable_sm(self, resume=False, auto_ack=True):
        """<enable/>; returns the <enabled/> element. Counting starts here."""
        attr = " resume='true'" if resume else ""
        self.send(f"<enable xmlns='{NS_SM}'{attr}/>")
        self.count_stanzas(auto_ack)
        return self.expect(lambda el: el.tag in (tag(NS_SM, "enabled"), tag(NS_SM, "failed")), what="enabled")

    def ack(self):
        self.send(f"<a xmlns='{NS_SM}' h='{self.h_in}'/>")

    # -- stanzas

    def message(self, to, body, mtype="chat", mid=None):
        mid = f" id='{xml_escape(mid)}'" if mid else ""
        self.send(f"<message to='{xml_escape(to)}' type='{mtype}'{mid}><body>{xml_escape(body)}</body></message>")

    def expect_message(self, body=None, timeout=TIMEOUT):
        def pred(el):
            if el.tag != tag(NS_CLIENT, "message"):
                return False
            b = el.find(tag(NS_CLIENT, "body"))
            return body is None or (b is not None and b.text == body)
        return self.expect(pred, timeout, what=f"message {body!r}")

    # -- ending

    def abort(self):
        """Drops the connection the way a lost network does from the
        server's point of view: no </stream:stream>, no TLS close_notify,
        a TCP reset."""
        raw = self.sock
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # Closing the TLS object without unwrap() sends no close_notify.
        raw.close()
        self.closed = True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def messages(elements):
    return [el for el in elements if el.tag == tag(NS_CLIENT, "message")]


def is_ping(el, domain):
    return (el.tag == tag(NS_CLIENT, "iq") and el.get("type") == "get" and el.get("from") == domain
            and el.find(tag(NS_PING, "ping")) is not None)
