"""
Helpers for tests/e2e/test_presence.py: slixmpp clients that record every
roster push and every presence stanza exactly as received (and never answer
a subscription request on their own), roster get/set by hand (with or
without 'ver'), XEP-0012 queries, and barriers that tell when the router
has finished with what a client sent.

Every wait has a timeout: a test never hangs on a silent server.
"""
import asyncio
import time
import uuid
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError, IqTimeout

from xmpp import TIMEOUT, Client

PASSWORD = "correct horse battery staple"
NS_ROSTER = "jabber:iq:roster"
NS_LAST = "jabber:iq:last"
NS_CLIENT = "jabber:client"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def new_user(inst, prefix="u"):
    """A fresh account on inst; returns its bare JID (lower case)."""
    jid = f"{prefix}{uuid.uuid4().hex[:10]}@{inst.domain}"
    inst.add_user(jid, PASSWORD)
    return jid


# ---------------------------------------------------------------------------
# What a client received


def item_of(el):
    """A roster <item/> element as a dict: jid, name, subscription, ask,
    groups (sorted)."""
    return {"jid": el.get("jid"), "name": el.get("name"), "subscription": el.get("subscription"),
            "ask": el.get("ask"),
            "groups": sorted(g.text or "" for g in el.findall(f"{{{NS_ROSTER}}}group"))}


def push_of(iq):
    """A roster push (iq type='set') as a dict: from, ver, items, and the
    iq's raw XML for messages."""
    q = iq.xml.find(f"{{{NS_ROSTER}}}query")
    items = [item_of(el) for el in q.findall(f"{{{NS_ROSTER}}}item")] if q is not None else []
    return {"from": iq.xml.get("from"), "ver": q.get("ver") if q is not None else None, "items": items,
            "xml": str(iq)}


def presence_of(p):
    """A received presence as a dict, read from the XML as it came:
    from, to, type (None for available), show, status, priority (None if
    absent)."""
    x = p.xml
    status = x.find(f"{{{NS_CLIENT}}}status")
    prio = x.find(f"{{{NS_CLIENT}}}priority")
    show = x.find(f"{{{NS_CLIENT}}}show")
    return {"from": x.get("from"), "to": x.get("to"), "type": x.get("type"),
            "show": show.text if show is not None else None,
            "status": status.text if status is not None else None,
            "priority": int(prio.text) if prio is not None and prio.text else None,
            "at": time.monotonic()}


class PClient(Client):
    """A Client that records roster pushes (.pushes, a queue of push_of
    dicts) and presence (.presences, a queue of presence_of dicts; also
    .presence_log, everything ever received, in order). Subscription requests are
    left to the test: slixmpp's automatic answers are off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.roster.auto_authorize = None   # neither approve nor deny by itself
        self.roster.auto_subscribe = False
        self.pushes = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.presence_log = []
        self.presence_unmatched = []     # received, not yet consumed by expect_presence
        self.add_event_handler("roster_update", self._on_roster_update)
        self.add_event_handler("presence", self._on_presence)

    def _on_roster_update(self, iq):
        if iq["type"] == "set":
            self.pushes.put_nowait(push_of(iq))

    def _on_presence(self, p):
        got = presence_of(p)
        self.presence_log.append(got)
        self.presences.put_nowait(got)


async def connect(inst, jid, gateway=0, *, presence=True, status=None, priority=None, roster=False,
                  pool=None, timeout=TIMEOUT):
    """A PClient logged in as jid (a full JID binds that resource) on
    inst.gateways[gateway]. With roster, it fetches the roster first (so it
    gets pushes); with presence, it then sends available presence (with
    status and priority if given). The client joins pool (if given) before
    it connects, so the caller can abort it whatever happens."""
    gw = inst.gateways[gateway]
    c = PClient(jid, PASSWORD, "127.0.0.1", gw.port, inst.cert_path)
    if pool is not None:
        pool.append(c)
    await c.login(timeout=timeout, presence=False)
    if roster:
        c.roster_ver, c.roster_items = await roster_get(c)
    if presence:
        c.send_presence(pstatus=status, ppriority=priority)
    return c


def abort_all(pool):
    for c in pool:
        c.abort_quietly()


async def close_all(*clients):
    for c in clients:
        if c is not None and not c.closed.is_set():
            await c.close()


def drop(c):
    """Ends c's TCP connection at once: no </stream:stream>, no TLS
    close_notify, no unavailable presence."""
    c.transport.abort()


# ---------------------------------------------------------------------------
# iq


async def send_iq(c, itype, child, to=None, timeout=TIMEOUT):
    """Sends <iq type=itype> with child (an ET element) to `to` (None: no
    'to', the own account) and returns the reply whatever its type."""
    iq = c.Iq()
    iq["type"] = itype
    if to is not None:
        iq["to"] = to
    iq.xml.append(child)
    try:
        return await iq.send(timeout=timeout)
    except IqError as e:
        return e.iq
    except IqTimeout:
        raise AssertionError(f"{c.boundjid}: no reply to {itype} {child.tag} within {timeout} s") from None


def error_of(reply):
    """(error type, condition) of an iq error; fails on anything else."""
    assert reply["type"] == "error", f"expected an error, got {reply}"
    return reply["error"]["type"], reply["error"]["condition"]


async def roster_get(c, ver=None, timeout=TIMEOUT):
    """Roster get, with 'ver' if given. Returns (ver, {jid: item}) for a
    full roster, or None for an empty result (§2.6.3: roster unchanged)."""
    q = ET.Element(f"{{{NS_ROSTER}}}query")
    if ver is not None:
        q.set("ver", ver)
    reply = await send_iq(c, "get", q, timeout=timeout)
    assert reply["type"] == "result", f"{c.boundjid}: roster get failed: {reply}"
    rq = reply.xml.find(f"{{{NS_ROSTER}}}query")
    if rq is None:
        assert len(reply.xml) == 0, f"roster result with something else than a query: {reply}"
        return None
    assert rq.get("ver"), f"roster result without 'ver': {reply}"
    items = [item_of(el) for el in rq.findall(f"{{{NS_ROSTER}}}item")]
    return rq.get("ver"), {it["jid"]: it for it in items}


def roster_item_el(jid, name=None, groups=(), subscription=None):
    item = ET.Element(f"{{{NS_ROSTER}}}item", {"jid": jid})
    if name is not None:
        item.set("name", name)
    if subscription is not None:
        item.set("subscription", subscription)
    for g in groups:
        ET.SubElement(item, f"{{{NS_ROSTER}}}group").text = g
    return item


async def roster_set(c, *items, timeout=TIMEOUT):
    """Roster set carrying the given <item/> elements; returns the reply."""
    q = ET.Element(f"{{{NS_ROSTER}}}query")
    for it in items:
        q.append(it)
    return await send_iq(c, "set", q, timeout=timeout)


async def last_query(c, to, timeout=TIMEOUT):
    """XEP-0012 query to `to`. Returns ("result", seconds, text) or
    ("error", type, condition)."""
    reply = await send_iq(c, "get", ET.Element(f"{{{NS_LAST}}}query"), to=to, timeout=timeout)
    if reply["type"] == "error":
        return ("error", *error_of(reply))
    assert reply["type"] == "result", reply
    q = reply.xml.find(f"{{{NS_LAST}}}query")
    assert q is not None and q.get("seconds") is not None, f"last activity result without seconds: {reply}"
    return "result", int(q.get("seconds")), q.text


async def sync(c, timeout=TIMEOUT):
    """A round trip through the router: disco#info to the own account. What
    c sent before has reached the router, and what the router sent c
    before its answer has arrived."""
    reply = await send_iq(c, "get", ET.Element(f"{{{NS_DISCO_INFO}}}query"), to=c.boundjid.bare,
                          timeout=timeout)
    assert reply["type"] == "result", f"{c.boundjid}: round trip to the router failed: {reply}"


async def roster_barrier(c, timeout=TIMEOUT):
    """A round trip that waits for c's roster work: the router runs a
    user's roster work in order, so when this roster get is answered every
    presence broadcast c sent before it has gone out."""
    await roster_get(c, timeout=timeout)


# ---------------------------------------------------------------------------
# Waiting for pushes and presence


async def next_push(c, timeout=TIMEOUT):
    try:
        return await asyncio.wait_for(c.pushes.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{c.boundjid}: no roster push within {timeout} s") from None


async def expect_push(c, jid, timeout=TIMEOUT, **want):
    """The next roster push c receives is about jid (one item) and its
    item has the wanted fields (subscription=, ask=, name=, groups=).
    Returns (ver as int, item)."""
    push = await next_push(c, timeout)
    assert push["from"] in (None, c.boundjid.bare), f"push from {push['from']}: {push['xml']}"
    assert len(push["items"]) == 1, f"{c.boundjid}: push without exactly one item: {push['xml']}"
    item = push["items"][0]
    assert item["jid"] == jid, f"{c.boundjid}: push for {item['jid']}, expected {jid}: {push['xml']}"
    for key, value in want.items():
        assert item[key] == value, f"{c.boundjid}: push {key}={item[key]!r}, expected {value!r}: {push['xml']}"
    assert push["ver"] and push["ver"].isdigit(), f"{c.boundjid}: push without a numeric 'ver': {push['xml']}"
    return int(push["ver"]), item


def no_pushes(c):
    """Asserts no roster push is queued for c."""
    left = []
    while not c.pushes.empty():
        left.append(c.pushes.get_nowait()["xml"])
    assert not left, f"{c.boundjid} got unexpected roster pushes: {left}"


def matches(p, frm=None, type=None, status=None, priority=None):
    """p (a presence_of dict) has exactly that 'from' (when given), that
    type (None: available, "*": any), status and priority (when given)."""
    if frm is not None and p["from"] != frm:
        return False
    if type != "*" and p["type"] != type:
        return False
    if status is not None and p["status"] != status:
        return False
    if priority is not None and p["priority"] != priority:
        return False
    return True


async def expect_presence(c, frm, type=None, status=None, priority=None, timeout=TIMEOUT):
    """Waits for a presence from frm (exact 'from') of the given type (None:
    available) and returns it. Presence received before it that does not
    match stays unconsumed for later expect_presence calls."""
    for i, p in enumerate(c.presence_unmatched):
        if matches(p, frm, type, status, priority):
            return c.presence_unmatched.pop(i)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            p = await asyncio.wait_for(c.presences.get(), left)
        except asyncio.TimeoutError:
            seen = [{k: v for k, v in p.items() if k != "at"} for p in c.presence_unmatched]
            raise AssertionError(
                f"{c.boundjid}: no presence from={frm} type={type} status={status!r} priority={priority} "
                f"within {timeout} s; unconsumed: {seen}") from None
        if matches(p, frm, type, status, priority):
            return p
        c.presence_unmatched.append(p)


def presences_from(c, bare_or_full):
    """Everything c ever received from that bare JID (any resource) or full
    JID."""
    out = []
    for p in c.presence_log:
        frm = p["from"] or ""
        if frm == bare_or_full or frm.split("/")[0] == bare_or_full:
            out.append(p)
    return out


async def subscribe_mutually(a, b, timeout=TIMEOUT):
    """The four-step handshake between a and b (both logged in, both having
    fetched their roster, available): afterwards each has the other as
    'both'. Consumes the pushes and subscription stanzas it causes."""
    a_bare, b_bare = a.boundjid.bare, b.boundjid.bare
    a.send_presence(pto=b_bare, ptype="subscribe")
    await expect_push(a, b_bare, subscription="none", ask="subscribe", timeout=timeout)
    await expect_presence(b, a_bare, type="subscribe", timeout=timeout)
    b.send_presence(pto=a_bare, ptype="subscribed")
    await expect_push(b, a_bare, subscription="from", ask=None, timeout=timeout)
    await expect_push(a, b_bare, subscription="to", ask=None, timeout=timeout)
    await expect_presence(a, b_bare, type="subscribed", timeout=timeout)
    b.send_presence(pto=a_bare, ptype="subscribe")
    await expect_push(b, a_bare, subscription="from", ask="subscribe", timeout=timeout)
    await expect_presence(a, b_bare, type="subscribe", timeout=timeout)
    a.send_presence(pto=b_bare, ptype="subscribed")
    await expect_push(a, b_bare, subscription="both", ask=None, timeout=timeout)
    await expect_push(b, a_bare, subscription="both", ask=None, timeout=timeout)
    await expect_presence(b, a_bare, type="subscribed", timeout=timeout)
