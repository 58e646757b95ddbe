"""
End-to-end offline messages (XEP-0160, XEP-0203 delay) and the chat archive
(XEP-0313 MAM with XEP-0059 paging, XEP-0359 stanza ids) on SQLite and on
PostgreSQL, with real clients: slixmpp for ordinary logins, raw_client.py
where the test must control XEP-0198 acknowledgements byte by byte.

The rules tested are router/offline.c O1-O5, router/archive.c M1-M3 and
router/route.c R8-R9 and W1 (stanzas parked while a fresh router warms
up); failure tests kill a storage worker during a burst (left dead, and
restarted at once as systemd would), stop PostgreSQL for ten seconds, and
take all storage away. Instances are used after their warm-up
(offline_helpers.wait_warm) except by the tests about the warm-up itself.

Every test asserts on what was received; every wait has a timeout.
"""
import asyncio
import datetime
import signal
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

import parleylib
from offline_helpers import (NS_CHATSTATES, PASSWORD, abort_all, bodies_until, close_all, collect, connect,
                             delays, describe, error_condition, errors_in, mam_query, new_user, next_msg,
                             parse_stamp, pg_start, pg_stop, router_counters, stanza_ids, sync,
                             wait_archive, wait_storage_idle, wait_warm)
from raw_client import NS_CLIENT, NS_SM, RawClient, tag
from xmpp import TIMEOUT, run

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, parley_module):
    """One instance per backend, shared by tests that use fresh accounts."""
    return wait_warm(parley_module(backend=request.param))


def unique(tag_):
    return f"{tag_}-{uuid.uuid4().hex[:8]}"


def session_rows(inst, jid):
    r = inst.ctl("sessions", jid)
    assert r.returncode == 0, f"parleyctl sessions {jid}: {r.stderr}"
    return parleylib.parse_table(r.stdout)


async def wait_offline(inst, jid, timeout=5):
    """Waits until the router lists no session of jid."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(session_rows, inst, jid):
        assert time.monotonic() < deadline, f"{jid} still has a session {timeout} s later"
        await asyncio.sleep(0.1)


def send_chat(client, to, body, mid=None, mtype="chat"):
    m = client.make_message(mto=to, mbody=body, mtype=mtype)
    if mid:
        m["id"] = mid
    m.send()


async def stored(inst, timeout=15):
    """Waits until the router has no storage job queued or in flight: what
    was routed before has been written. Used where the test is about
    something else than the race between a write and the next login (that
    race has its own test)."""
    await asyncio.to_thread(wait_storage_idle, inst, timeout)


async def no_errors(client, seconds=1.0):
    """Asserts client got no error stanza (message) within seconds; returns
    the other messages received meanwhile."""
    got = await collect(client, seconds)
    errs = errors_in(got)
    assert not errs, f"{client.boundjid} got errors: {[describe(e) for e in errs]}"
    return got


async def collect_bodies(client, n, timeout, quiet=3.0, stamps=None):
    """Bodies of messages client receives until n have come and then
    `quiet` seconds pass without one (to catch duplicates), or timeout.
    With stamps (a dict), records each body's <delay/> stamp there."""
    got = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        if len(got) >= n and time.monotonic() - last >= quiet:
            break
        try:
            m = await asyncio.wait_for(client.stanzas.get(), 0.2)
        except asyncio.TimeoutError:
            continue
        if m["body"]:
            got.append(m["body"])
            last = time.monotonic()
            if stamps is not None:
                stamps[m["body"]] = [s for _, s in delays(m)]
    return got


def check_exactly_once(got, expected, stamps=None):
    """got must hold every body of expected exactly once; then in order."""
    dups = sorted({b for b in got if got.count(b) > 1})
    missing = [b for b in expected if b not in set(got)]
    extra = sorted(set(got) - set(expected))
    assert not dups and not missing and not extra, (
        f"{len(got)} received for {len(expected)} sent: {len(dups)} duplicated {dups[:10]}, "
        f"{len(missing)} missing {missing[:10]}, {len(extra)} unexpected {extra[:10]}")
    if got != expected:
        i = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
        shown = [(b, (stamps or {}).get(b)) for b in got[max(0, i - 2):i + 4]]
        raise AssertionError(f"all delivered once but out of order (O3): received[{i}] is {got[i]!r}, "
                             f"sent[{i}] was {expected[i]!r}; around it (body, delay stamps): {shown}")


# ---------------------------------------------------------------------------
# Offline storage and delivery (O1-O4)


# Three chat messages to an offline account: the sender gets no answer; at
# login with priority >= 0 all three arrive in order, each with a <delay/>
# from the domain stamped when the server received it (not when it
# delivered it) and a <stanza-id by=recipient/>; at the next login they do
# not come again.
def test_offline_stored_delivered_in_order_once(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    bodies = [f"offline {i} {uuid.uuid4().hex[:6]} <&>" for i in range(3)]

    async def scenario():
        alice = bob = bob2 = None
        try:
            alice = await connect(server, alice_jid, gateway=0)
            sent_at = []
            for i, body in enumerate(bodies):
                sent_at.append(time.time())
                send_chat(alice, bob_jid, body, mid=f"o{i}")
                await asyncio.sleep(0.3)
            await sync(alice)
            await no_errors(alice, 1.0)                                          # O1
            await asyncio.sleep(2.0)  # so the delivery time differs from the receipt time

            bob = await connect(server, bob_jid, gateway=1)
            got = [await next_msg(bob, TIMEOUT) for _ in bodies]
            delivered_at = time.time()
            assert [m["body"] for m in got] == bodies, [m["body"] for m in got]
            ids = []
            for m, t in zip(got, sent_at):
                d = delays(m)
                assert len(d) == 1, f"want one <delay xmlns='urn:xmpp:delay'/>: {describe(m)}"
                assert d[0][0] == server.domain, f"delay from {d[0][0]!r}, want {server.domain!r}: {describe(m)}"
                stamp = parse_stamp(d[0][1])
                assert t - 1.0 <= stamp <= t + 2.0, \
                    f"delay stamp {d[0][1]} is {stamp - t:+.2f} s from the send time (want the receipt time)"
                assert delivered_at - stamp >= 1.5, \
                    f"delay stamp {d[0][1]} is the delivery time, not the receipt time"
                sids = stanza_ids(m)
                assert len(sids) == 1 and sids[0][0] == bob_jid and sids[0][1], \
                    f"want one <stanza-id by='{bob_jid}' id=.../>: {describe(m)}"
                assert m["from"].bare == alice_jid, describe(m)
                ids.append(sids[0][1])
            assert len(set(ids)) == 3, f"stanza ids not unique: {ids}"
            await sync(bob)
            await close_all(bob)
            await wait_offline(server, bob_jid)
            await stored(server)

            bob2 = await connect(server, bob_jid, gateway=0)
            await sync(bob2)
            again = [m["body"] for m in await collect(bob2, 2.0) if m["body"]]
            assert not again, f"delivered again at the next login (O4: deleted once written/acked): {again}"
        finally:
            await close_all(alice, bob, bob2)

    run(scenario())


# Messages the router has routed to an offline account before that account
# logs in are all delivered in that login, not one login later: the fetch
# of stored messages (offline_get) must not overtake the writes
# (offline_put) submitted before it. No waiting for storage here on
# purpose: a client logs in whenever it likes.
def test_offline_routed_before_login_delivered_in_that_login(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    bodies = [f"race {i:02d}" for i in range(20)]

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(server, alice_jid)
            for b in bodies:
                send_chat(alice, bob_jid, b)
            await sync(alice)  # every put has been submitted when bob logs in
            bob = await connect(server, bob_jid, gateway=1)
            got = await collect_bodies(bob, len(bodies), timeout=TIMEOUT, quiet=1.0)
            assert got == bodies, (f"{len(got)} of {len(bodies)} routed before the login delivered in it; "
                                   f"missing {[b for b in bodies if b not in got]}")
        finally:
            await close_all(alice, bob)

    run(scenario())


# Only chat and normal messages with a body are kept (O1): a headline and a
# bodiless chat state to an offline account are dropped quietly, a normal
# message (no type) is stored like a chat message.
def test_offline_stores_only_messages_with_body(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    normal, last = unique("normal"), unique("last")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(server, alice_jid)
            send_chat(alice, bob_jid, unique("headline"), mtype="headline")
            state = alice.make_message(mto=bob_jid, mtype="chat")
            ET.SubElement(state.xml, f"{{{NS_CHATSTATES}}}composing")
            state.send()
            send_chat(alice, bob_jid, normal, mtype=None)
            send_chat(alice, bob_jid, last)
            await sync(alice)
            await no_errors(alice, 1.0)
            await stored(server)

            bob = await connect(server, bob_jid, gateway=1)
            got = await bodies_until(bob, 2, TIMEOUT)
            rest = await collect(bob, 1.5)
            assert got == [normal, last], f"stored: {got}"
            assert not rest, f"also delivered: {[describe(m) for m in rest]}"
        finally:
            await close_all(alice, bob)

    run(scenario())


# A chat message to an account that does not exist is answered with
# <service-unavailable/> (O2), from the address it was sent to.
def test_offline_unknown_account_service_unavailable(server):
    alice_jid = new_user(server, "alice")
    nobody = f"nobody{uuid.uuid4().hex[:8]}@{server.domain}"

    async def scenario():
        alice = await connect(server, alice_jid)
        try:
            send_chat(alice, nobody, "anyone there?", mid="nx1")
            err = await next_msg(alice, TIMEOUT, with_body=False)
            assert error_condition(err) == "service-unavailable", describe(err)
            assert err["id"] == "nx1" and err["from"].bare == nobody, describe(err)
        finally:
            await close_all(alice)

    run(scenario())


# Initial presence with a negative priority does not fetch stored messages
# (O3); a later login with priority 0 gets them.
def test_offline_not_delivered_to_negative_priority(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    body = unique("for-nonnegative")

    async def scenario():
        alice = shy = bob = None
        try:
            alice = await connect(server, alice_jid)
            send_chat(alice, bob_jid, body)
            await sync(alice)
            await no_errors(alice, 0.5)
            await stored(server)
            shy = await connect(server, bob_jid, priority=-1)
            await sync(shy)
            early = [m["body"] for m in await collect(shy, 1.5) if m["body"]]
            assert not early, f"delivered to a priority -1 session: {early}"
            bob = await connect(server, bob_jid, gateway=1, priority=0)
            got = await next_msg(bob, TIMEOUT)
            assert got["body"] == body
        finally:
            await close_all(alice, shy, bob)

    run(scenario())


def raw_bob_with_sm(inst, jid, gateway=1, auto_ack=False):
    """bob over a raw stream: bind, stream management on (counting from
    here), then initial presence, which makes the router send the stored
    messages."""
    c = RawClient(inst, gateway)
    c.login(jid, PASSWORD)
    enabled = c.enable_sm(auto_ack=auto_ack)
    assert enabled.tag == tag(NS_SM, "enabled"), ET.tostring(enabled)
    c.send("<presence/>")
    return c


def raw_bodies(c, n, timeout=TIMEOUT):
    got = [c.expect_message(timeout=timeout) for _ in range(n)]
    return [m.findtext(tag(NS_CLIENT, "body")) for m in got], got


# With stream management on, stored messages written to bob but never
# acknowledged (<a/>) stay stored when the connection is lost (O4): the next
# login gets them again, with the same stanza ids, and the sender is not
# told anything (the messages were not lost).
def test_offline_unacked_redelivered_after_drop(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    bodies = [unique(f"unacked{i}") for i in range(3)]

    async def scenario():
        alice = bob = None
        raw = None
        try:
            alice = await connect(server, alice_jid)
            for b in bodies:
                send_chat(alice, bob_jid, b)
            await sync(alice)
            await no_errors(alice, 0.5)
            await stored(server)

            raw = await asyncio.to_thread(raw_bob_with_sm, server, bob_jid)
            first, els = await asyncio.to_thread(raw_bodies, raw, 3)
            assert first == bodies, first
            first_ids = [stanza_ids(el) for el in els]
            await asyncio.to_thread(raw.abort)  # never acknowledged
            await wait_offline(server, bob_jid)
            await no_errors(alice, 1.0)  # no bounce of a message that is still stored
            await stored(server)

            bob = await connect(server, bob_jid, gateway=0)
            again = [await next_msg(bob, TIMEOUT) for _ in bodies]
            assert [m["body"] for m in again] == bodies, [m["body"] for m in again]
            assert [stanza_ids(m) for m in again] == first_ids, "redelivered with other stanza ids"
            rest = [m["body"] for m in await collect(bob, 1.0) if m["body"]]
            assert not rest, f"delivered twice in one session (O4): {rest}"
        finally:
            if raw is not None:
                raw.close()
            await close_all(alice, bob)

    run(scenario())


# A live message written to bob's stream-managed session but never
# acknowledged when the connection is lost is kept offline (O5) rather than
# bounced: the sender gets no error and bob gets it, once, at his next login.
def test_live_unacked_message_kept_offline_after_drop(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    body = unique("live-unacked")

    async def scenario():
        alice = bob = None
        raw = None
        try:
            alice = await connect(server, alice_jid)
            raw = await asyncio.to_thread(raw_bob_with_sm, server, bob_jid)
            await asyncio.to_thread(raw.collect, 0.5)  # own presence, no stored messages
            send_chat(alice, bob_jid, body)
            await asyncio.to_thread(raw.expect_message, body)
            await asyncio.to_thread(raw.abort)  # never acknowledged
            await wait_offline(server, bob_jid)
            await no_errors(alice, 1.0)
            await stored(server)

            bob = await connect(server, bob_jid, gateway=0)
            got = await collect_bodies(bob, 1, TIMEOUT, quiet=1.0)
            assert got == [body], f"at the next login: {got}"
        finally:
            if raw is not None:
                raw.close()
            await close_all(alice, bob)

    run(scenario())


# With stream management on, stored messages that bob acknowledges are
# deleted: the next login does not get them again.
def test_offline_acked_with_sm_not_redelivered(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")
    bodies = [unique(f"acked{i}") for i in range(3)]

    async def scenario():
        alice = bob = None
        raw = None
        try:
            alice = await connect(server, alice_jid)
            for b in bodies:
                send_chat(alice, bob_jid, b)
            await sync(alice)
            await stored(server)
            raw = await asyncio.to_thread(raw_bob_with_sm, server, bob_jid)
            first, _ = await asyncio.to_thread(raw_bodies, raw, 3)
            assert first == bodies, first
            await asyncio.to_thread(raw.ack)
            await asyncio.to_thread(raw.collect, 0.5)
            raw.send("</stream:stream>")
            await asyncio.to_thread(raw.wait_closed)
            await wait_offline(server, bob_jid)
            await no_errors(alice, 0.5)
            await stored(server)

            bob = await connect(server, bob_jid, gateway=0)
            await sync(bob)
            again = [m["body"] for m in await collect(bob, 2.0) if m["body"]]
            assert not again, f"acknowledged messages delivered again: {again}"
        finally:
            if raw is not None:
                raw.close()
            await close_all(alice, bob)

    run(scenario())


# offline.quota=3: the fourth message to an offline account is refused with
# <resource-constraint/> to its sender (O2); the first three are delivered.
@pytest.mark.parametrize("backend", BACKENDS)
def test_offline_quota_resource_constraint(parley, backend):
    inst = wait_warm(parley(backend=backend, gateways=1, storage=2, offline={"quota": 3}))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    bodies = [unique(f"quota{i}") for i in range(4)]

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(inst, alice_jid)
            for i, b in enumerate(bodies):
                send_chat(alice, bob_jid, b, mid=f"q{i}")
            errs = [(e["id"], error_condition(e)) for e in errors_in(await collect(alice, 2.0))]
            await stored(inst)
            bob = await connect(inst, bob_jid)
            delivered = await collect_bodies(bob, 3, TIMEOUT, quiet=1.5)
            assert errs == [("q3", "resource-constraint")] and delivered == bodies[:3], \
                f"errors to the sender {errs}, stored and delivered {delivered} (sent {bodies})"
        finally:
            await close_all(alice, bob)

    run(scenario())


# A drain's acknowledgements are deleted together (router/offline_acks.c):
# 300 stored messages, more than one delete job holds (256 ids), fill
# offline.quota=300 exactly. After bob drains them, a second device of his
# logs in while the first is still online: it gets none of them again
# (A2, O4). Then bob logs off and alice sends 300 more: every one is taken,
# so the quota counter went down by all 300 deletes; bob gets exactly
# those, once each, in order.
@pytest.mark.parametrize("backend", BACKENDS)
def test_offline_drain_deletes_coalesced(parley, backend):
    n = 300
    inst = wait_warm(parley(backend=backend, gateways=1, storage=2, offline={"quota": n}))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    first = [unique(f"drain{i:03d}") for i in range(n)]
    second = [unique(f"again{i:03d}") for i in range(n)]

    async def scenario():
        alice = bob = bob2 = None
        try:
            alice = await connect(inst, alice_jid)
            for i, b in enumerate(first):
                send_chat(alice, bob_jid, b, mid=f"d{i}")
            await sync(alice)
            await no_errors(alice, 0.5)
            await stored(inst)

            bob = await connect(inst, bob_jid)
            got = await collect_bodies(bob, n, TIMEOUT * 2, quiet=1.0)
            check_exactly_once(got, first)
            await sync(bob)
            await stored(inst)
            bob2 = await connect(inst, bob_jid)
            await sync(bob2)
            again = [m["body"] for m in await collect(bob2, 1.5) if m["body"]]
            assert not again, f"{len(again)} drained messages delivered again to a second device: {again[:5]}"
            await close_all(bob, bob2)
            bob = bob2 = None
            await wait_offline(inst, bob_jid)

            for i, b in enumerate(second):
                send_chat(alice, bob_jid, b, mid=f"e{i}")
            await sync(alice)
            errs = [(e["id"], error_condition(e)) for e in errors_in(await collect(alice, 1.0))]
            assert not errs, f"{len(errs)} refused after the drain (quota counter not lowered by the deletes): " \
                             f"{errs[:5]}"
            await stored(inst)
            bob = await connect(inst, bob_jid)
            got = await collect_bodies(bob, n, TIMEOUT * 2, quiet=1.0)
            check_exactly_once(got, second)
        finally:
            await close_all(alice, bob, bob2)

    run(scenario())


# ---------------------------------------------------------------------------
# The chat archive (M1-M3)


async def exchange_for_archive(inst, alice_jid, bob_jid, carol_jid):
    """alice and bob exchange 7 chat messages both ways, two of them while
    bob is offline (delivered at his next login), and carol sends alice one.
    Returns (clients, expected) with expected the list of (sender bare JID,
    body) in order and the stanza ids each recipient saw."""
    alice = await connect(inst, alice_jid, gateway=0)
    bob = await connect(inst, bob_jid, gateway=1)
    carol = await connect(inst, carol_jid, gateway=1)
    expected, seen_ids = [], {}

    async def send(src, dst, body, online=True):
        send_chat(src, dst.boundjid.bare, body)
        expected.append((src.boundjid.bare, body))
        if online:
            got = await next_msg(dst, TIMEOUT)
            assert got["body"] == body, got["body"]
            seen_ids[body] = stanza_ids(got)

    await send(alice, bob, unique("m1 a>b"))
    await send(bob, alice, unique("m2 b>a"))
    await send(alice, bob, unique("m3 a>b"))
    send_chat(carol, alice_jid, unique("c1 carol"))
    await next_msg(alice, TIMEOUT)
    await send(bob, alice, unique("m4 b>a"))
    await close_all(bob)
    await wait_offline(inst, bob_jid)
    await send(alice, bob, unique("m5 a>b offline"), online=False)
    await send(alice, bob, unique("m6 a>b offline"), online=False)
    await sync(alice)
    bob = await connect(inst, bob_jid, gateway=1)
    for _, body in expected[-2:]:
        got = await next_msg(bob, TIMEOUT)
        assert got["body"] == body, got["body"]
        seen_ids[body] = stanza_ids(got)
    await send(bob, alice, unique("m7 b>a"))
    return (alice, bob, carol), expected, seen_ids


# Both parties' archives hold every message of the conversation once, in
# order, from both directions, offline ones included, under one id each
# (the recipient's <stanza-id/>); `with` filters by peer; start/end narrow
# by time (inclusive); RSM max=2 walks all pages forwards with <after/> and
# backwards from <before/>, <fin complete='true'/> only on the last page,
# <count/> the size of the whole result set.
@pytest.mark.parametrize("backend", BACKENDS)
def test_mam_query_filters_and_paging(parley, backend):
    inst = wait_warm(parley(backend=backend, gateways=2, storage=2))
    alice_jid, bob_jid, carol_jid = new_user(inst, "alice"), new_user(inst, "bob"), new_user(inst, "carol")

    async def scenario():
        clients = ()
        try:
            clients, expected, seen_ids = await exchange_for_archive(inst, alice_jid, bob_jid, carol_jid)
            alice, bob, _ = clients
            n = len(expected)
            bodies = [b for _, b in expected]

            full = await wait_archive(alice, bob_jid, n)
            assert full.error is None, full
            assert full.bodies == bodies, f"alice's archive with bob:\n{full.bodies}\nwant\n{bodies}"
            assert full.complete is True and full.count == n, full
            assert full.first == full.ids[0] and full.last == full.ids[-1], full
            assert len(set(full.ids)) == n and full.ids == sorted(full.ids), f"ids not unique and ordered: {full.ids}"
            for r, (sender, body) in zip(full.results, expected):
                assert r["wrapper_from"] == alice_jid, f"result from {r['wrapper_from']}"
                assert r["from"].split("/")[0] == sender, f"{body}: archived from {r['from']}, want {sender}"
                assert r["type"] == "chat"
                if sender == bob_jid:  # received by alice: the id she saw (M1)
                    assert seen_ids[body] == [(alice_jid, r["id"])], (body, seen_ids[body], r["id"])
            stamps = [parse_stamp(r["stamp"]) for r in full.results]
            assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 30, stamps

            theirs = await wait_archive(bob, alice_jid, n)
            assert theirs.bodies == bodies, f"bob's archive with alice:\n{theirs.bodies}\nwant\n{bodies}"
            assert theirs.ids == full.ids, "one server id per message for both parties (M1)"
            for r, (sender, body) in zip(theirs.results, expected):
                if sender == alice_jid:
                    assert seen_ids[body] == [(bob_jid, r["id"])], (body, seen_ids[body], r["id"])

            everything = await mam_query(alice)
            assert everything.count == n + 1 and len(everything.results) == n + 1, everything
            assert any(b.startswith("c1 carol") for b in everything.bodies), everything

            s = [r["stamp"] for r in full.results]
            rng = await mam_query(alice, with_jid=bob_jid, start=s[2], end=s[4])
            assert rng.bodies == bodies[2:5] and rng.count == 3 and rng.complete, rng
            since = await mam_query(alice, with_jid=bob_jid, start=s[5])
            assert since.bodies == bodies[5:], since
            until = await mam_query(alice, with_jid=bob_jid, end=s[1])
            assert until.bodies == bodies[:2], until
            later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
            none = await mam_query(alice, with_jid=bob_jid, start=later.strftime("%Y-%m-%dT%H:%M:%SZ"))
            assert none.results == [] and none.count == 0 and none.complete, none

            pages, after = [], None
            for _ in range(n + 2):
                page = await mam_query(alice, with_jid=bob_jid, max_=2, after=after)
                assert page.error is None and page.count == n, page
                pages.append(page)
                if page.complete or not page.results:
                    break
                after = page.last
            assert [len(p.results) for p in pages] == [2, 2, 2, 1], pages
            assert [p.complete for p in pages] == [False, False, False, True], pages
            assert sum((p.bodies for p in pages), []) == bodies
            assert all(p.first == p.ids[0] and p.last == p.ids[-1] for p in pages), pages

            # Backwards from the newest entry (the empty <before/> for "the
            # last page" has its own test).
            pages, before = [], full.ids[-1]
            for _ in range(n + 2):
                page = await mam_query(alice, with_jid=bob_jid, max_=2, before=before)
                assert page.error is None and page.count == n, page
                pages.append(page)
                if page.complete or not page.results:
                    break
                before = page.first
            assert [len(p.results) for p in pages] == [2, 2, 2], pages
            assert [p.complete for p in pages] == [False, False, True], pages
            assert sum((p.bodies for p in reversed(pages)), []) == bodies[:-1]
        finally:
            await close_all(*clients)

    run(scenario(), timeout=90)


# RSM paging at the end of the archive (XEP-0059 §2.5): an empty <before/>
# asks for the last page; an <after/> or <before/> naming an id that is not
# in the archive is <item-not-found/> (XEP-0313 §5.1.2), not a server
# error.
def test_mam_last_page_and_unknown_id(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(server, alice_jid)
            bob = await connect(server, bob_jid, gateway=1)
            bodies = [unique(f"page{i}") for i in range(3)]
            for b in bodies:
                send_chat(alice, bob_jid, b)
                await next_msg(bob, TIMEOUT)
            full = await wait_archive(alice, bob_jid, 3)
            assert full.bodies == bodies, full

            last = await mam_query(alice, with_jid=bob_jid, max_=2, before="")
            assert last.error is None, f"empty <before/> (last page) refused: {last}"
            assert last.bodies == bodies[1:] and last.count == 3 and last.complete is False, last

            unknown = "00000000deadbeef"
            for kw in ({"after": unknown}, {"before": unknown}):
                ans = await mam_query(alice, with_jid=bob_jid, max_=2, **kw)
                assert ans.error == "item-not-found" and not ans.results, f"{kw}: {ans}"
        finally:
            await close_all(alice, bob)

    run(scenario())


# A query addressed to someone else's archive is refused with <forbidden/>
# (M2) and returns nothing of it.
def test_mam_other_archive_forbidden(server):
    alice_jid, bob_jid = new_user(server, "alice"), new_user(server, "bob")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(server, alice_jid)
            bob = await connect(server, bob_jid, gateway=1)
            send_chat(bob, alice_jid, unique("private"))
            await next_msg(alice, TIMEOUT)
            await wait_archive(bob, alice_jid, 1)
            ans = await mam_query(alice, to=bob_jid)
            assert ans.error == "forbidden" and not ans.results, ans
        finally:
            await close_all(alice, bob)

    run(scenario())


# `parleyctl archive purge --before DATE`: a date in the past keeps the
# archive, a date in the future empties it (every user).
@pytest.mark.parametrize("backend", BACKENDS)
def test_archive_purge(parley, backend):
    inst = wait_warm(parley(backend=backend, gateways=1, storage=1))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(inst, alice_jid)
            bob = await connect(inst, bob_jid)
            for i in range(2):
                send_chat(alice, bob_jid, unique(f"purge{i}"))
                await next_msg(bob, TIMEOUT)
            assert len((await wait_archive(alice, bob_jid, 2)).results) == 2
            assert len((await wait_archive(bob, alice_jid, 2)).results) == 2

            r = await asyncio.to_thread(inst.ctl, "archive", "purge", "--before", "2001-01-01")
            assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}{r.stdout}"
            kept = await mam_query(alice, with_jid=bob_jid)
            assert len(kept.results) == 2 and kept.count == 2, kept

            future = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
            r = await asyncio.to_thread(inst.ctl, "archive", "purge", "--before", future)
            assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}{r.stdout}"
            for c in (alice, bob):
                ans = await mam_query(c)
                assert ans.error is None and ans.results == [] and ans.count == 0 and ans.complete, ans
        finally:
            await close_all(alice, bob)

    run(scenario())


# ---------------------------------------------------------------------------
# Failures


BURST = 1000


# kill -9 of one of two storage workers in the middle of a burst of 1,000
# messages to an offline account (PostgreSQL): every message is delivered
# exactly once, in order, at the next login, and the sender gets no error.
# "stays dead": the router notices after peer_timeout and redoes the
# worker's jobs elsewhere. "restarted": the worker comes back under its
# name at once (as systemd's Restart= does), before the router noticed.
@pytest.mark.parametrize("restart", [False, True], ids=["stays-dead", "restarted"])
def test_offline_burst_survives_storage_kill(parley, restart):
    inst = wait_warm(parley(backend="postgresql", gateways=1, storage=2, offline={"quota": 5000}))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    bodies = [f"seq {i:04d}" for i in range(BURST)]

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(inst, alice_jid)
            await sync(alice)
            for i, b in enumerate(bodies):
                send_chat(alice, bob_jid, b)
                if i == BURST * 3 // 10:
                    # Freeze storage-1 so jobs pile up in flight on it, and
                    # kill it a moment later: the kill then surely lands
                    # with work in flight (a bare kill's timing would decide).
                    await sync(alice)
                    inst.procs["storage-1"].signal(signal.SIGSTOP)
                elif i == BURST * 5 // 10:
                    await sync(alice)
                    _, inflight = await asyncio.to_thread(router_counters, inst)
                    assert inflight.get("storage-1", 0) > 0, f"nothing in flight on storage-1: {inflight}"
                    await asyncio.to_thread(inst.kill, "storage-1", signal.SIGKILL)
                    if restart:
                        inst.start("storage-1")
                elif i % 50 == 0:
                    await asyncio.sleep(0)
            await sync(alice, timeout=30)
            # Jobs lost with the worker must be redone well before
            # router.job_timeout_ms (30 s) would fail them.
            await asyncio.to_thread(wait_storage_idle, inst, 20)
            await no_errors(alice, 0.5)

            bob = await connect(inst, bob_jid)
            stamps = {}
            got = await collect_bodies(bob, BURST, timeout=40, quiet=2.0, stamps=stamps)
            check_exactly_once(got, bodies, stamps)
        finally:
            abort_all(alice, bob)

    run(scenario(), timeout=150)


# PostgreSQL stopped for ten seconds in the middle of a burst: `parleyctl
# status` shows the jobs queued and retried meanwhile; once it is back every
# message is stored and delivered exactly once, in order, and the sender
# gets no error.
def test_offline_burst_survives_postgres_restart(parley, postgres):
    inst = wait_warm(parley(backend="postgresql", gateways=1, storage=2))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    bodies = [f"pg {i:03d}" for i in range(60)]

    async def scenario():
        alice = bob = None
        seen = {"jobs_queued": 0, "jobs_retried": 0}
        try:
            alice = await connect(inst, alice_jid)
            for b in bodies[:20]:
                send_chat(alice, bob_jid, b)
            await sync(alice)
            await asyncio.to_thread(pg_stop, postgres)
            down_at = time.monotonic()
            try:
                for b in bodies[20:]:
                    send_chat(alice, bob_jid, b)
                    await asyncio.sleep(0.1)
                while time.monotonic() - down_at < 10:
                    counters, _ = await asyncio.to_thread(router_counters, inst)
                    for k in seen:
                        seen[k] = max(seen[k], counters.get(k, 0))
                    await asyncio.sleep(0.3)
            finally:
                await asyncio.to_thread(pg_start, postgres)
            assert seen["jobs_queued"] > 0 or seen["jobs_retried"] > 0, \
                f"parleyctl status showed no queued or retried job while the database was down: {seen}"
            await asyncio.to_thread(wait_storage_idle, inst, 40)
            await no_errors(alice, 0.5)

            bob = await connect(inst, bob_jid)
            stamps = {}
            got = await collect_bodies(bob, len(bodies), timeout=30, quiet=2.0, stamps=stamps)
            check_exactly_once(got, bodies, stamps)
        finally:
            abort_all(alice, bob)

    run(scenario(), timeout=120)


async def send_through_warmup(inst, alice_jid, bob_jid, seconds=3.0, every=0.025):
    """alice sends bob (offline) one message every `every` seconds for
    `seconds` from just after the router started, so some are parked by
    route.c W1 and some are routed after the warm-up; then bob logs in.
    Returns (sent bodies, their send times, bodies received, stamps)."""
    alice = bob = None
    try:
        alice = await connect(inst, alice_jid)
        bodies, sent_at = [], []
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            body = f"warm {i:03d}"
            sent_at.append(time.time())
            send_chat(alice, bob_jid, body)
            bodies.append(body)
            i += 1
            await asyncio.sleep(every)
        await sync(alice)
        await stored(inst)
        await no_errors(alice, 0.3)
        bob = await connect(inst, bob_jid)
        stamps = {}
        got = await collect_bodies(bob, len(bodies), timeout=TIMEOUT, quiet=1.0, stamps=stamps)
        return bodies, sent_at, got, stamps
    finally:
        await close_all(alice, bob)


# Right after the router starts (or restarts), messages to an account with
# no session are parked for router.peer_timeout_ms (route.c W1). Messages
# that arrive after that time must not overtake the parked ones: bob gets
# every message in the order it was sent.
def test_offline_order_across_router_warmup(parley):
    inst = parley(backend="sqlite", gateways=1, storage=1)
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    bodies, _, got, stamps = run(send_through_warmup(inst, alice_jid, bob_jid))
    check_exactly_once(got, bodies, stamps)


# A message parked during the warm-up is stamped (<delay/>, O3) with the
# time the server received it, not the time the warm-up ended.
def test_offline_delay_stamp_of_parked_message(parley):
    inst = parley(backend="sqlite", gateways=1, storage=1)
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    bodies, sent_at, got, stamps = run(send_through_warmup(inst, alice_jid, bob_jid, seconds=1.0, every=0.1))
    assert sorted(got) == sorted(bodies), got
    late = [(b, f"{parse_stamp(stamps[b][0]) - t:+.3f} s") for b, t in zip(bodies, sent_at)
            if stamps.get(b) and abs(parse_stamp(stamps[b][0]) - t) > 0.5]
    assert not late, f"delay stamps far from the receipt time (body, stamp - send time): {late}"


# A message parked during the warm-up (W1) whose sender logs out before the
# warm-up ends is still stored and delivered: the sender was told nothing,
# so it must not be lost.
def test_offline_parked_message_survives_sender_logout(parley):
    inst = parley(backend="sqlite", gateways=1, storage=1)
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    body = unique("parked")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(inst, alice_jid)
            send_chat(alice, bob_jid, body)
            await sync(alice)
            await close_all(alice)
            await asyncio.to_thread(wait_warm, inst)
            await stored(inst)
            bob = await connect(inst, bob_jid)
            got = await collect_bodies(bob, 1, TIMEOUT, quiet=1.0)
            assert got == [body], f"sent during the warm-up by a sender who then left: {got}"
        finally:
            await close_all(alice, bob)

    run(scenario())


# With no storage worker at all, a message to an offline account is not
# lost silently: after router.job_timeout_ms its sender gets
# <resource-constraint/> (O2). Once a worker is back, messages are stored
# and delivered again.
def test_offline_without_storage_resource_constraint(parley):
    inst = wait_warm(parley(backend="sqlite", gateways=1, storage=1, router={"job_timeout_ms": 2000}))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")
    after = unique("after")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(inst, alice_jid)
            await asyncio.to_thread(inst.kill, "storage-1", signal.SIGKILL)
            send_chat(alice, bob_jid, unique("lost"), mid="lost1")
            err = await next_msg(alice, timeout=10, with_body=False)
            assert err["id"] == "lost1" and error_condition(err) == "resource-constraint", describe(err)

            inst.start("storage-1")
            await asyncio.to_thread(inst.wait_ready)
            send_chat(alice, bob_jid, after, mid="after1")
            await no_errors(alice, 1.0)
            bob = await connect(inst, bob_jid)
            got = await collect_bodies(bob, 1, TIMEOUT, quiet=1.0)
            assert got == [after], got
        finally:
            await close_all(alice, bob)

    run(scenario())


if __name__ == "__main__":
    import sys
    sys.exit(pytest.main([__file__, "-v"]))


# archive.enabled = false: messages still flow, nothing is archived, and a
# MAM query answers an empty, complete result.
def test_archive_disabled(parley):
    inst = wait_warm(parley(gateways=1, storage=1, archive={"enabled": False}))
    alice_jid, bob_jid = new_user(inst, "alice"), new_user(inst, "bob")

    async def scenario():
        alice = bob = None
        try:
            alice = await connect(inst, alice_jid)
            bob = await connect(inst, bob_jid)
            body = unique("not archived")
            send_chat(alice, bob_jid, body)
            got = await next_msg(bob, TIMEOUT)
            assert got["body"] == body
            await asyncio.sleep(1.0)  # what would have been written has been by now
            ans = await mam_query(alice, with_jid=bob_jid)
            assert ans.error is None and ans.results == [] and ans.count == 0 and ans.complete is True, ans
        finally:
            await close_all(alice, bob)

    run(scenario())
