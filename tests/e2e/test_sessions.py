"""
End-to-end tests of the Sessions feature set: resource conflicts under
kick_old and reject_new, server-generated resources, sessions.max_per_user,
device classes, bare-JID routing (RFC 6121 §8) and priorities, message
carbons (XEP-0280), a gateway or the router killed with SIGKILL, parleyctl
sessions/kick, and two gateways racing to bind one resource.

Real processes (router, two storage workers, two gateways), real clients
(slixmpp, or a raw client where slixmpp cannot show what the server sent);
each user acts on a chosen gateway port, and every test asserts on what the
clients received. Negative checks ("X does not get it") use a marker: a
message sent afterwards on the same path must be the next one X receives.
Every wait has a timeout.
"""
import asyncio
import gc
import signal
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from sessions_helpers import (NS_CARBONS, NS_DISCO_INFO, RawClient, close_all, connect, ctl, expect_body,
                              login_ids, new_user, no_more_messages, send_and_expect, sessions, sync,
                              wait_closed, wait_sessions)
from xmpp import LoginFailed, exchange
from xmpp import run as xmpp_run


@pytest.fixture(scope="module")
def server(parley_module):
    """Default policy (kick_old, bare JID to all resources); tests use fresh accounts."""
    return parley_module()


def run(coro):
    """xmpp.run, then the finalizers of whatever the scenario dropped (an
    aborted transport) run here, not later inside pytest's report code."""
    try:
        return xmpp_run(coro)
    finally:
        gc.collect()


def local(jid):
    return jid.split("@", 1)[0]


def abort_all(clients):
    """Drops every connection a scenario opened, whatever state it is in."""
    for c in clients:
        if isinstance(c, RawClient):
            c.close()
        else:
            c.abort_quietly()


async def first_of(**waits):
    """Runs the named awaitables until one finishes; returns (name, result).
    The others are cancelled; an exception of the first one propagates."""
    tasks = {asyncio.ensure_future(aw): name for name, aw in waits.items()}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)   # every outcome retrieved
    t = next(t for t in tasks if t in done)
    return tasks[t], t.result()


# ---------------------------------------------------------------------------
# Conflicts


# kick_old (RFC 6120 §7.7.2.2 option 1): a second bind of alice/phone on the
# other gateway ends the first session with the <conflict/> stream error and
# closes its connection; the new session is alice/phone and chats with bob.
def test_kick_old_replaces_session_across_gateways(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    pool = []

    async def scenario():
        try:
            old = await connect(server, f"{alice}/phone", gateway=0, pool=pool)
            bob_c = await connect(server, bob, gateway=1, pool=pool)
            new = await connect(server, f"{alice}/phone", gateway=1, pool=pool)
            await wait_closed(old)
            assert old.stream_errors == ["conflict"], old.stream_errors
            assert new.boundjid.full == f"{alice}/phone", new.boundjid
            await exchange(new, bob_c, "replaced")
            assert not new.closed.is_set() and new.stream_errors == [], new.stream_errors
            rows = await sessions(server, alice)
            assert [(r["login_id"], r["gateway"]) for r in rows] == [(f"{alice}/phone", "gateway-2")], rows
            await close_all(new, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# reject_new (option 2): the second bind gets a <conflict/> iq error, its
# stream stays open and binds another resource; the first is unaffected.
def test_reject_new_refuses_bind_and_keeps_stream(parley):
    inst = parley(sessions={"conflict": "reject_new"})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []

    async def scenario():
        try:
            first = await connect(inst, f"{alice}/phone", gateway=0, pool=pool)
            bob_c = await connect(inst, bob, gateway=1, pool=pool)
            raw = RawClient(inst, gateway=1)
            pool.append(raw)
            await raw.login(local(alice))
            assert await raw.bind("phone") == ("error", "conflict")
            assert await raw.still_open(0.3), f"stream closed after a refused bind: {raw.received[-300:]!r}"
            assert await raw.bind("laptop") == ("result", f"{alice}/laptop")
            body = f"to laptop {time.monotonic_ns()}"
            bob_c.send_message(mto=f"{alice}/laptop", mbody=body, mtype="chat")
            await raw.expect_message(body)
            await exchange(first, bob_c, "first unaffected")
            assert not first.closed.is_set() and first.stream_errors == [], first.stream_errors
            rows = await sessions(inst, alice)
            assert sorted((r["login_id"], r["gateway"]) for r in rows) == [
                (f"{alice}/laptop", "gateway-2"), (f"{alice}/phone", "gateway-1")], rows
            await close_all(first, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# S1: two logins without a resource get two different server-generated
# resources and both stay online (RFC 6120 §7.6.2.1).
def test_generated_resources_coexist(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    pool = []

    async def scenario():
        try:
            a1 = await connect(server, alice, gateway=0, pool=pool)
            a2 = await connect(server, alice, gateway=1, pool=pool)
            bob_c = await connect(server, bob, gateway=0, pool=pool)
            for c in (a1, a2):
                assert c.boundjid.bare == alice and c.boundjid.resource, c.boundjid
            assert a1.boundjid.resource != a2.boundjid.resource, (a1.boundjid, a2.boundjid)
            await send_and_expect(bob_c, a1.boundjid.full, a1, "to a1")
            await send_and_expect(bob_c, a2.boundjid.full, a2, "to a2")
            await sync(a1)
            await sync(a2)
            for c in (a1, a2):
                assert not c.closed.is_set() and c.stream_errors == [], (c.boundjid, c.stream_errors)
            rows = await sessions(server, alice)
            assert login_ids(rows) == sorted([a1.boundjid.full, a2.boundjid.full]), rows
            await close_all(a1, a2, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# S5 kick_old: with max_per_user 1, a second login (another resource, other
# gateway) ends the first with <conflict/>.
def test_max_per_user_kick_old(parley):
    inst = parley(sessions={"max_per_user": 1})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []

    async def scenario():
        try:
            first = await connect(inst, f"{alice}/a", gateway=0, pool=pool)
            second = await connect(inst, f"{alice}/b", gateway=1, pool=pool)
            await wait_closed(first)
            assert first.stream_errors == ["conflict"], first.stream_errors
            assert second.boundjid.full == f"{alice}/b"
            bob_c = await connect(inst, bob, gateway=0, pool=pool)
            await exchange(second, bob_c, "limit")
            rows = await sessions(inst, alice)
            assert login_ids(rows) == [f"{alice}/b"], rows
            await close_all(second, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# S5 reject_new: with max_per_user 1, a second login's bind is refused with
# resource-constraint; the stream stays open and the first is unaffected.
def test_max_per_user_reject_new(parley):
    inst = parley(sessions={"max_per_user": 1, "conflict": "reject_new"})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []

    async def scenario():
        try:
            first = await connect(inst, f"{alice}/a", gateway=0, pool=pool)
            raw = RawClient(inst, gateway=1)
            pool.append(raw)
            await raw.login(local(alice))
            assert await raw.bind("b") == ("error", "resource-constraint")
            assert await raw.still_open(0.3), f"stream closed after a refused bind: {raw.received[-300:]!r}"
            bob_c = await connect(inst, bob, gateway=1, pool=pool)
            await exchange(first, bob_c, "first unaffected")
            assert not first.closed.is_set() and first.stream_errors == [], first.stream_errors
            rows = await sessions(inst, alice)
            assert login_ids(rows) == [f"{alice}/a"], rows
            await close_all(first, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# S5 kick_old with max_per_user 2: a third login replaces the oldest of the
# two sessions, also when both were bound within the same second (the
# router's `since` has one-second resolution; starting just after a second
# boundary makes that the case every time).
def test_max_per_user_replaces_oldest(parley):
    inst = parley(sessions={"max_per_user": 2})
    alice = new_user(inst, "alice")
    pool = []

    async def scenario():
        try:
            await asyncio.sleep(1.02 - time.time() % 1)
            oldest = await connect(inst, f"{alice}/oldest", gateway=0, pool=pool)
            middle = await connect(inst, f"{alice}/middle", gateway=1, pool=pool)
            newest = await connect(inst, f"{alice}/newest", gateway=0, pool=pool)
            name, _ = await first_of(oldest=oldest.closed.wait(), middle=middle.closed.wait(),
                                     timeout=asyncio.sleep(10))
            assert name == "oldest", f"the limit ended {name!r}, not the oldest session"
            assert oldest.stream_errors == ["conflict"], oldest.stream_errors
            await sync(middle)
            await sync(newest)
            assert not middle.closed.is_set() and middle.stream_errors == [], middle.stream_errors
            rows = await sessions(inst, alice)
            assert login_ids(rows) == [f"{alice}/middle", f"{alice}/newest"], rows
            await close_all(middle, newest)
        finally:
            abort_all(pool)

    run(scenario())


# ---------------------------------------------------------------------------
# Device classes


# S4/A5/B4: "1#alice" binds alice/ios whatever resource it asks for, so a
# second "1#alice" replaces the first (<conflict/>); "2#alice" coexists as
# alice/android; a message to the bare JID reaches both; parleyctl sessions
# shows the class column.
def test_device_classes(parley):
    inst = parley(sessions={"device_classes": {"1": "ios", "2": "android"}})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    ios_login = f"1#{alice}"
    android_login = f"2#{alice}"
    pool = []

    async def scenario():
        try:
            ios1 = await connect(inst, ios_login, gateway=0, pool=pool)
            assert ios1.boundjid.full == f"{alice}/ios", ios1.boundjid
            ios2 = await connect(inst, f"{ios_login}/phone", gateway=1, pool=pool)
            assert ios2.boundjid.full == f"{alice}/ios", ios2.boundjid
            await wait_closed(ios1)
            assert ios1.stream_errors == ["conflict"], ios1.stream_errors
            android = await connect(inst, android_login, gateway=0, pool=pool)
            assert android.boundjid.full == f"{alice}/android", android.boundjid
            bob_c = await connect(inst, bob, gateway=1, pool=pool)
            body = f"to both classes {time.monotonic_ns()}"
            bob_c.send_message(mto=alice, mbody=body, mtype="chat")
            await expect_body(ios2, body)
            await expect_body(android, body)
            for c in (ios2, android):
                assert not c.closed.is_set() and c.stream_errors == [], (c.boundjid, c.stream_errors)
            rows = await sessions(inst, alice)
            assert sorted((r["login_id"], r["class"], r["gateway"]) for r in rows) == [
                (f"{alice}/android", "android", "gateway-1"), (f"{alice}/ios", "ios", "gateway-2")], rows
            bob_rows = await sessions(inst, bob)
            assert [r["class"] for r in bob_rows] == ["-"], bob_rows
            await close_all(ios2, android, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# ---------------------------------------------------------------------------
# Routing to a user's resources (RFC 6121 §8.5)


# R4: a chat to the bare JID reaches every available resource with
# non-negative priority; a negative-priority resource gets only full-JID
# messages. R4a: a chat to the full JID of a gone resource goes as to the
# bare JID. R5: an iq to it is answered with service-unavailable.
def test_bare_jid_to_all_non_negative(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    pool = []

    async def scenario():
        try:
            a = await connect(server, f"{alice}/a", gateway=0, pool=pool)            # no <priority/>: 0
            b = await connect(server, f"{alice}/b", gateway=1, priority=5, pool=pool)
            neg = await connect(server, f"{alice}/neg", gateway=0, priority=-1, pool=pool)
            bob_c = await connect(server, bob, gateway=1, pool=pool)

            body = f"bare {time.monotonic_ns()}"
            bob_c.send_message(mto=alice, mbody=body, mtype="chat")
            await expect_body(a, body)
            await expect_body(b, body)
            await send_and_expect(bob_c, f"{alice}/neg", neg, "marker after bare")     # full JID: delivered

            body = f"normal bare {time.monotonic_ns()}"
            bob_c.send_message(mto=alice, mbody=body, mtype="normal")
            await expect_body(a, body)
            await expect_body(b, body)
            await send_and_expect(bob_c, f"{alice}/neg", neg, "marker after normal")

            body = f"to a gone resource {time.monotonic_ns()}"
            bob_c.send_message(mto=f"{alice}/gone", mbody=body, mtype="chat")
            await expect_body(a, body)
            await expect_body(b, body)
            await send_and_expect(bob_c, f"{alice}/neg", neg, "marker after gone")

            reply = await bob_c.iq_get(f"{alice}/gone", NS_DISCO_INFO)
            assert reply["type"] == "error" and reply["error"]["condition"] == "service-unavailable", reply
            no_more_messages(bob_c)        # no bounce for the messages that were delivered
            for c in (a, b, neg):
                no_more_messages(c)
            await close_all(a, b, neg, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# routing.bare_jid = highest_priority: a chat to the bare JID (or to a gone
# full JID) reaches only the highest-priority resource.
def test_bare_jid_highest_priority(parley):
    inst = parley(routing={"bare_jid": "highest_priority"})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []

    async def scenario():
        try:
            low = await connect(inst, f"{alice}/low", gateway=0, priority=1, pool=pool)
            high = await connect(inst, f"{alice}/high", gateway=1, priority=5, pool=pool)
            bob_c = await connect(inst, bob, gateway=0, pool=pool)
            for to in (alice, f"{alice}/gone"):
                body = f"to {to} {time.monotonic_ns()}"
                bob_c.send_message(mto=to, mbody=body, mtype="chat")
                await expect_body(high, body)
                await send_and_expect(bob_c, f"{alice}/low", low, f"marker after {to}")
            # The priorities swap: now low is the highest.
            low.send_presence(ppriority=10)
            await sync(low)
            body = f"after the swap {time.monotonic_ns()}"
            bob_c.send_message(mto=alice, mbody=body, mtype="chat")
            await expect_body(low, body)
            await send_and_expect(bob_c, f"{alice}/high", high, "marker after swap")
            rows = await sessions(inst, alice)
            assert sorted((r["login_id"], r["priority"]) for r in rows) == [
                (f"{alice}/high", "5"), (f"{alice}/low", "10")], rows
            await close_all(low, high, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# ---------------------------------------------------------------------------
# Message carbons (XEP-0280)


def message_with_private(client, to, body):
    msg = client.make_message(mto=to, mbody=body, mtype="chat")
    msg.xml.append(ET.Element(f"{{{NS_CARBONS}}}private"))
    return msg


async def next_carbon(queue, timeout=10):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no carbon within {timeout} s") from None


# C3/C4/C5 and C2: alice/a's chat to bob is copied to alice/b as <sent/>;
# bob's chat to alice/a is copied to alice/b as <received/>; a message with
# <private/> is copied in neither direction; the server advertises carbons.
def test_carbons(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    pool = []

    async def scenario():
        try:
            a = await connect(server, f"{alice}/a", gateway=0, carbons=True, pool=pool)
            b = await connect(server, f"{alice}/b", gateway=1, carbons=True, pool=pool)
            bob_c = await connect(server, f"{bob}/desk", gateway=1, pool=pool)
            bob_full = bob_c.boundjid.full

            body = f"sent {time.monotonic_ns()}"
            a.send_message(mto=bob_full, mbody=body, mtype="chat")
            await expect_body(bob_c, body)
            fwd = await next_carbon(b.carbons_sent)
            assert fwd == {"wrapper_from": alice, "wrapper_to": f"{alice}/b", "from": f"{alice}/a",
                           "to": bob_full, "type": "chat", "body": body}, fwd

            body = f"received {time.monotonic_ns()}"
            bob_c.send_message(mto=f"{alice}/a", mbody=body, mtype="chat")
            await expect_body(a, body)
            fwd = await next_carbon(b.carbons_received)
            assert fwd == {"wrapper_from": alice, "wrapper_to": f"{alice}/b", "from": bob_full,
                           "to": f"{alice}/a", "type": "chat", "body": body}, fwd
            no_more_messages(b)             # b got the copy, not the original

            # <private/>: not copied either way; the markers after them are.
            priv = f"private sent {time.monotonic_ns()}"
            message_with_private(a, bob_full, priv).send()
            await expect_body(bob_c, priv)
            marker = f"marker sent {time.monotonic_ns()}"
            a.send_message(mto=bob_full, mbody=marker, mtype="chat")
            await expect_body(bob_c, marker)
            fwd = await next_carbon(b.carbons_sent)
            assert fwd["body"] == marker, f"private message copied: {fwd}"

            priv = f"private received {time.monotonic_ns()}"
            message_with_private(bob_c, f"{alice}/a", priv).send()
            await expect_body(a, priv)
            marker = f"marker received {time.monotonic_ns()}"
            bob_c.send_message(mto=f"{alice}/a", mbody=marker, mtype="chat")
            await expect_body(a, marker)
            fwd = await next_carbon(b.carbons_received)
            assert fwd["body"] == marker, f"private message copied: {fwd}"

            # The sender itself gets no copy of what it sent or received.
            await sync(a)
            assert a.carbons_sent.empty() and a.carbons_received.empty(), "alice/a got carbons of itself"

            reply = await a.iq_get(server.domain, NS_DISCO_INFO)
            assert reply["type"] == "result", reply
            features = {f.get("var") for f in reply.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
            assert NS_CARBONS in features, features
            await close_all(a, b, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# ---------------------------------------------------------------------------
# Process failures


# A gateway killed with SIGKILL: after router.peer_timeout_ms (1.5 s in
# these instances) its sessions are gone from parleyctl sessions; the other
# gateway's users carry on, and the restarted gateway takes logins again.
def test_gateway_killed_sessions_end(parley):
    inst = parley()
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []

    async def scenario():
        try:
            alice_c = await connect(inst, f"{alice}/gw2", gateway=1, pool=pool)
            bob_c = await connect(inst, f"{bob}/gw1", gateway=0, pool=pool)
            rows = await sessions(inst)
            assert {f"{alice}/gw2", f"{bob}/gw1"} <= set(login_ids(rows)), rows
            await asyncio.to_thread(inst.kill, "gateway-2", signal.SIGKILL)
            killed = time.monotonic()
            await wait_closed(alice_c, timeout=5)
            rows = await wait_sessions(inst, None, lambda rows: f"{alice}/gw2" not in login_ids(rows), 6,
                                       "alice's session on the killed gateway did not end")
            elapsed = time.monotonic() - killed
            assert f"{bob}/gw1" in login_ids(rows), rows
            assert all(r["gateway"] != "gateway-2" for r in rows), rows
            # That contacts also get alice's unavailable presence (router/
            # presence.c V5) is checked with a subscription in
            # test_presence.py::test_gateway_killed_contacts_see_unavailable.
            names = {r.get("name") for r in await asyncio.to_thread(inst.status)}
            assert "gateway-2" not in names, names
            # bob's gateway carries on; alice logs in there.
            alice2 = await connect(inst, f"{alice}/again", gateway=0, pool=pool)
            await exchange(alice2, bob_c, "after gateway loss")
            # The restarted gateway takes logins again.
            inst.start("gateway-2")
            await asyncio.to_thread(inst.wait_ready)
            alice3 = await connect(inst, f"{alice}/back", gateway=1, pool=pool)
            await exchange(alice3, bob_c, "restarted gateway")
            await close_all(alice2, alice3, bob_c)
            return elapsed
        finally:
            abort_all(pool)

    elapsed = run(scenario())
    assert elapsed < 6, f"sessions ended {elapsed:.1f} s after the kill"


# A gateway killed and started again well within router.peer_timeout_ms:
# the old process's sessions end as soon as the new one says hello (another
# pid), not only at the timeout, and alice binds the same resource on the
# restarted gateway at once.
def test_gateway_restarted_within_timeout(parley):
    inst = parley(router={"peer_timeout_ms": 8000})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []

    async def scenario():
        try:
            alice_c = await connect(inst, f"{alice}/phone", gateway=1, pool=pool)
            bob_c = await connect(inst, f"{bob}/desk", gateway=0, pool=pool)
            await asyncio.to_thread(inst.kill, "gateway-2", signal.SIGKILL)
            killed = time.monotonic()
            await wait_closed(alice_c, timeout=5)
            inst.start("gateway-2")
            await wait_sessions(inst, alice, lambda rows: rows == [], 3,
                                "the killed process's session did not end when gateway-2 came back")
            assert time.monotonic() - killed < 6, "ended by the peer timeout, not by the new hello"
            again = await connect(inst, f"{alice}/phone", gateway=1, pool=pool)
            assert again.boundjid.full == f"{alice}/phone" and again.stream_errors == []
            await exchange(again, bob_c, "restarted gateway")
            rows = await sessions(inst, alice)
            assert [(r["login_id"], r["gateway"]) for r in rows] == [(f"{alice}/phone", "gateway-2")], rows
            await close_all(again, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


async def wait_log(inst, name, text, timeout):
    """Waits until process `name`'s log contains text; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in inst.procs[name].log_text(400):
            return True
        await asyncio.sleep(0.05)
    return False


def drain(c):
    """The messages queued for c (with a body), removed from its queue."""
    out = []
    while not c.messages.empty():
        out.append(c.messages.get_nowait())
    return out


async def kill_router_and_wait_link_lost(inst):
    await asyncio.to_thread(inst.kill, "router", signal.SIGKILL)
    # The gateways notice at once (U1); wait for it so what is sent next is
    # really sent while the router is known to be away.
    for gw in ("gateway-1", "gateway-2"):
        assert await wait_log(inst, gw, "router link lost", 3), f"{gw} did not notice the router's death"


# U1-U3: the router killed with SIGKILL and started again. Clients on both
# gateways stay connected; what alice sends while the router is down
# reaches carol (same gateway) after it is back; chat across the gateways
# works again within a few seconds; the sessions are re-announced with their
# presence (parleyctl sessions, and bare-JID delivery).
def test_router_restart_keeps_clients(parley):
    inst = parley()
    alice, bob, carol = new_user(inst, "alice"), new_user(inst, "bob"), new_user(inst, "carol")
    pool = []

    async def scenario():
        try:
            alice_c = await connect(inst, f"{alice}/a", gateway=0, priority=3, pool=pool)
            bob_c = await connect(inst, f"{bob}/b", gateway=1, pool=pool)
            carol_c = await connect(inst, f"{carol}/c", gateway=0, pool=pool)
            await kill_router_and_wait_link_lost(inst)
            held = f"while the router is down {time.monotonic_ns()}"
            alice_c.send_message(mto=carol_c.boundjid.full, mbody=held, mtype="chat")
            await asyncio.sleep(0.3)
            inst.start("router")
            restarted = time.monotonic()
            await expect_body(carol_c, held, timeout=10)
            # Across gateways only once the router knows both again: see
            # test_router_restart_delivers_held_message_across_gateways.
            rows = await wait_sessions(inst, None, lambda rows: len(rows) >= 3, 5, "sessions not re-announced")
            assert sorted((r["login_id"], r["gateway"], r["priority"]) for r in rows) == [
                (f"{alice}/a", "gateway-1", "3"), (f"{bob}/b", "gateway-2", "0"),
                (f"{carol}/c", "gateway-1", "0")], rows
            await exchange(alice_c, bob_c, "after router restart", timeout=5)
            # Re-announced with presence: the bare JID reaches alice.
            await send_and_expect(bob_c, alice, alice_c, "bare after restart")
            elapsed = time.monotonic() - restarted
            for c in (alice_c, bob_c, carol_c):
                assert not c.closed.is_set() and c.stream_errors == [], (c.boundjid, c.stream_errors)
            no_more_messages(alice_c)       # no service-unavailable bounce
            await close_all(alice_c, bob_c, carol_c)
            return elapsed
        finally:
            abort_all(pool)

    elapsed = run(scenario())
    assert elapsed < 10, f"chat took {elapsed:.1f} s to work after the restart"


# U1-U2 across gateways: what alice (gateway-1) sends to bob (gateway-2)
# while the router is down reaches bob after the router is back, even when
# gateway-2 re-announces bob a moment after gateway-1 released its held
# messages. The natural race (each gateway re-announces on its own next
# heartbeat) loses the message about half the time; stopping gateway-2
# (SIGSTOP, well under router.peer_timeout_ms) makes it deterministic.
def test_router_restart_delivers_held_message_across_gateways(parley):
    inst = parley()
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")
    pool = []
    gw2 = inst.procs["gateway-2"]

    async def scenario():
        try:
            alice_c = await connect(inst, f"{alice}/a", gateway=0, pool=pool)
            bob_c = await connect(inst, f"{bob}/b", gateway=1, pool=pool)
            await kill_router_and_wait_link_lost(inst)
            held = f"while the router is down {time.monotonic_ns()}"
            alice_c.send_message(mto=bob_c.boundjid.full, mbody=held, mtype="chat")
            await asyncio.sleep(0.3)
            gw2.signal(signal.SIGSTOP)
            try:
                inst.start("router")
                assert await wait_log(inst, "gateway-1", "held messages sent", 3), \
                    "gateway-1 did not release its held messages"
                await asyncio.sleep(0.3)     # the new router has routed them by now
            finally:
                gw2.signal(signal.SIGCONT)
            try:
                await expect_body(bob_c, held, timeout=5)
            except asyncio.TimeoutError:
                bounces = [f"{m['type']} {m['error']['condition']}" for m in drain(alice_c)]
                raise AssertionError(f"bob never got the held message; alice got {bounces or 'no answer'} "
                                     "(with offline storage the message is stored for bob's next login)") from None
            await exchange(alice_c, bob_c, "after router restart", timeout=5)
            await close_all(alice_c, bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# ---------------------------------------------------------------------------
# Administration


# parleyctl kick LOGINID ends that session with <policy-violation/>;
# parleyctl kick USER ends all of the user's sessions; others carry on.
def test_parleyctl_kick(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    pool = []

    async def scenario():
        try:
            one = await connect(server, f"{alice}/one", gateway=0, pool=pool)
            two = await connect(server, f"{alice}/two", gateway=1, pool=pool)
            three = await connect(server, f"{alice}/three", gateway=0, pool=pool)
            bob_c = await connect(server, bob, gateway=1, pool=pool)

            r = await ctl(server, "kick", f"{alice}/one", "testing")
            assert r.returncode == 0 and f"{alice}/one" in r.stdout, (r.returncode, r.stdout, r.stderr)
            await wait_closed(one)
            assert one.stream_errors == ["policy-violation"], one.stream_errors
            rows = await wait_sessions(server, alice, lambda rows: len(rows) == 2, 3, "kicked session still listed")
            assert login_ids(rows) == [f"{alice}/three", f"{alice}/two"], rows
            await sync(two)
            await sync(three)

            r = await ctl(server, "kick", alice)
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            assert f"{alice}/two" in r.stdout and f"{alice}/three" in r.stdout, r.stdout
            for c in (two, three):
                await wait_closed(c)
                assert c.stream_errors == ["policy-violation"], (c.boundjid, c.stream_errors)
            await wait_sessions(server, alice, lambda rows: rows == [], 3, "kicked sessions still listed")

            r = await ctl(server, "kick", f"{alice}/one")
            assert r.returncode == 1 and "no such session" in r.stderr, (r.returncode, r.stderr)
            await sync(bob_c)
            assert not bob_c.closed.is_set() and bob_c.stream_errors == [], bob_c.stream_errors
            await close_all(bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# parleyctl kick takes a JID as an operator types it and normalizes it
# (RFC 7622: localpart and domain are case-insensitive), as parleyctl
# sessions and parleyctl user do.
def test_parleyctl_kick_normalizes_jid(server):
    alice = new_user(server, "alice")
    pool = []

    async def scenario():
        try:
            one = await connect(server, f"{alice}/one", gateway=0, pool=pool)
            two = await connect(server, f"{alice}/two", gateway=1, pool=pool)
            rows = await sessions(server, alice.upper())
            assert login_ids(rows) == [f"{alice}/one", f"{alice}/two"], rows
            r = await ctl(server, "kick", f"{alice.upper()}/one")
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            await wait_closed(one)
            assert one.stream_errors == ["policy-violation"], one.stream_errors
            r = await ctl(server, "kick", alice.upper())
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            await wait_closed(two)
            assert two.stream_errors == ["policy-violation"], two.stream_errors
        finally:
            abort_all(pool)

    run(scenario())


# ---------------------------------------------------------------------------
# Races (S3)


ROUNDS = 5


# kick_old: two gateways bind alice/raceN at the same time. Exactly one
# session remains (the connection still open, on its gateway); the other
# connection got <conflict/>.
def test_race_kick_old(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    pool = []

    async def one_round(bob_c, n):
        full = f"{alice}/race{n}"
        results = await asyncio.gather(connect(server, full, gateway=0, presence=False, pool=pool),
                                       connect(server, full, gateway=1, presence=False, pool=pool),
                                       return_exceptions=True)
        clients = pool[-2:]
        for res in results:
            if isinstance(res, BaseException) and not isinstance(res, LoginFailed):
                raise res
        # The loser is closed by the router's kick; give it the time.
        deadline = time.monotonic() + 5
        while sum(c.closed.is_set() for c in clients) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)       # a wrong second close would show now
        closed = [c for c in clients if c.closed.is_set()]
        open_ = [c for c in clients if not c.closed.is_set()]
        assert len(closed) == 1 and len(open_) == 1, \
            f"round {n}: closed {[(c.target[1], c.stream_errors) for c in closed]}, open {len(open_)}"
        loser, winner = closed[0], open_[0]
        assert loser.stream_errors == ["conflict"], f"round {n}: loser got {loser.stream_errors}"
        assert winner.boundjid.full == full and winner.stream_errors == [], (winner.boundjid, winner.stream_errors)
        rows = [r for r in await sessions(server, alice) if r["login_id"] == full]
        winner_gw = "gateway-1" if winner.target[1] == server.gateways[0].port else "gateway-2"
        assert [r["gateway"] for r in rows] == [winner_gw], f"round {n}: {rows}"
        await send_and_expect(bob_c, full, winner, f"round {n}")
        await close_all(winner)

    async def scenario():
        try:
            bob_c = await connect(server, bob, gateway=0, pool=pool)
            for n in range(ROUNDS):
                await one_round(bob_c, n)
            await close_all(bob_c)
        finally:
            abort_all(pool)

    run(scenario())


# reject_new: two gateways bind alice/raceN at the same time. Exactly one
# bind succeeds, the other gets <conflict/>; one session remains, on the
# winner's gateway.
def test_race_reject_new(parley):
    inst = parley(sessions={"conflict": "reject_new"})
    alice = new_user(inst, "alice")
    pool = []

    async def scenario():
        try:
            for n in range(ROUNDS):
                raws = [RawClient(inst, gateway=0), RawClient(inst, gateway=1)]
                pool.extend(raws)
                await asyncio.gather(*(r.login(local(alice)) for r in raws))
                full = f"{alice}/race{n}"
                results = await asyncio.gather(*(r.bind(f"race{n}") for r in raws))
                assert sorted(results) == [("error", "conflict"), ("result", full)], f"round {n}: {results}"
                winner_gw = "gateway-1" if results[0][0] == "result" else "gateway-2"
                rows = [r for r in await sessions(inst, alice) if r["login_id"] == full]
                assert [r["gateway"] for r in rows] == [winner_gw], f"round {n}: {rows}"
                for r in raws:
                    r.close()
        finally:
            abort_all(pool)

    run(scenario())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
