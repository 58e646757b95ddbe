"""
End-to-end roster, subscriptions, presence and last activity (RFC 6121
§2-§4, XEP-0012): real processes (router, two storage workers, two
gateways), slixmpp clients on both gateways. The tests assert on what the
clients received: roster pushes and their 'ver', presence stanzas with their
from/type/status/priority, iq results and errors.

Rules cited: Q1-Q5 router/roster.c, P1-P6 router/subscription.c, V1-V7
router/presence.c, L1-L3 router/last.c.
"""
import asyncio
import signal
import time

import pytest

from presence_helpers import (abort_all, close_all, connect, drop, error_of, expect_presence, expect_push,
                              last_query, new_user, no_pushes, presences_from, roster_barrier, roster_get,
                              roster_item_el, roster_set, subscribe_mutually, sync)
from xmpp import run

QUIET_S = 0.5        # how long "nothing more arrives" is watched
COUNT_WINDOW_S = 1.5  # how long duplicates of a presence are counted


@pytest.fixture(scope="module")
def server(parley_module):
    inst = parley_module()
    inst.started_at = time.monotonic()
    return inst


def scenario_with_pool(body, timeout=40):
    """Runs body(pool) on a fresh loop; every client in pool is aborted at
    the end, whatever happened."""
    async def wrapper():
        pool = []
        try:
            return await body(pool)
        finally:
            abort_all(pool)
    return run(wrapper(), timeout)


async def quiet(*clients):
    """Lets whatever is in flight arrive: a round trip on each client, then
    QUIET_S more."""
    for c in clients:
        await sync(c)
    await asyncio.sleep(QUIET_S)


# ---------------------------------------------------------------------------
# Roster management (§2)


# Q1, Q3, Q4: add, update and remove by one of alice's resources are pushed,
# with increasing versions, to both her resources that fetched the roster
# (one per gateway) and to no resource that did not; a get with the
# current 'ver' is an empty result, with an old one the full roster.
def test_roster_changes_pushed_with_versions(server):
    alice, bob, carol = new_user(server, "alice"), new_user(server, "bob"), new_user(server, "carol")

    async def body(pool):
        a1 = await connect(server, f"{alice}/one", 0, roster=True, pool=pool)
        a2 = await connect(server, f"{alice}/two", 1, roster=True, pool=pool)
        a3 = await connect(server, f"{alice}/three", 1, roster=False, pool=pool)
        assert a1.roster_items == {} and a2.roster_items == {}, (a1.roster_items, a2.roster_items)
        assert a1.roster_ver == a2.roster_ver, (a1.roster_ver, a2.roster_ver)
        vers = [int(a1.roster_ver)]

        async def change(item, jid, **want):
            reply = await roster_set(a1, item)
            assert reply["type"] == "result", f"roster set failed: {reply}"
            v1, _ = await expect_push(a1, jid, **want)
            v2, _ = await expect_push(a2, jid, **want)
            assert v1 == v2, f"the two resources got different versions {v1} and {v2}"
            assert v1 > vers[-1], f"version did not increase: {vers} then {v1}"
            vers.append(v1)

        await change(roster_item_el(bob, "Bob", ["Friends"]), bob,
                     subscription="none", ask=None, name="Bob", groups=["Friends"])
        await change(roster_item_el(bob, "Bobby", ["Friends", "Work"]), bob,
                     subscription="none", name="Bobby", groups=["Friends", "Work"])
        await change(roster_item_el(carol, None, []), carol, subscription="none", name=None, groups=[])
        await change(roster_item_el(bob, subscription="remove"), bob, subscription="remove")

        current = str(vers[-1])
        assert await roster_get(a2, ver=current) is None, "get with the current ver is not an empty result"
        for old in (str(vers[1]), str(vers[0])):
            got = await roster_get(a2, ver=old)
            assert got is not None, f"get with old ver {old} returned an empty result"
            ver, items = got
            assert ver == current, f"full roster has ver {ver}, pushes said {current}"
            assert list(items) == [carol], items
        ver, items = await roster_get(a1)
        assert ver == current and list(items) == [carol], (ver, items)

        await quiet(a1, a2, a3)
        no_pushes(a1)
        no_pushes(a2)
        no_pushes(a3)  # never asked for the roster (§2.1.6)
        await close_all(a1, a2, a3)

    scenario_with_pool(body)


# Q2, Q4: malformed roster sets are refused with the right condition and
# change nothing (no push, same version).
def test_roster_set_errors(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    dave = f"dave-unknown@{server.domain}"

    async def body(pool):
        a1 = await connect(server, f"{alice}/one", 0, roster=True, pool=pool)
        a2 = await connect(server, f"{alice}/two", 1, roster=True, pool=pool)
        before = a1.roster_ver
        cases = [
            ("remove unknown", [roster_item_el(dave, subscription="remove")], ("cancel", "item-not-found")),
            ("two items", [roster_item_el(bob, "B"), roster_item_el(dave, "D")], ("modify", "bad-request")),
            ("empty group", [roster_item_el(bob, "B", ["Friends", ""])], ("modify", "not-acceptable")),
            ("duplicate group", [roster_item_el(bob, "B", ["Friends", "Friends"])], ("modify", "bad-request")),
        ]
        for what, items, want in cases:
            reply = await roster_set(a1, *items)
            assert error_of(reply) == want, f"{what}: got {error_of(reply)}, expected {want}"
        await quiet(a1, a2)
        no_pushes(a1)
        no_pushes(a2)
        ver, items = await roster_get(a1)
        assert ver == before and items == {}, f"refused sets changed the roster: ver {before} -> {ver}, {items}"
        await close_all(a1, a2)

    scenario_with_pool(body)


# Q2: with roster.max_items=2, a third item is not-allowed; updating an
# existing item still works.
def test_roster_max_items(parley):
    inst = parley(roster_max_items=2)
    alice = new_user(inst, "alice")
    bob, carol, dave = (f"{n}@{inst.domain}" for n in ("bob", "carol", "dave"))

    async def body(pool):
        a = await connect(inst, f"{alice}/one", 0, roster=True, pool=pool)
        for jid in (bob, carol):
            reply = await roster_set(a, roster_item_el(jid, jid.split("@")[0]))
            assert reply["type"] == "result", reply
            await expect_push(a, jid, subscription="none")
        reply = await roster_set(a, roster_item_el(dave, "dave"))
        assert error_of(reply) == ("cancel", "not-allowed"), reply
        reply = await roster_set(a, roster_item_el(bob, "Robert"))
        assert reply["type"] == "result", f"updating an existing item at the limit failed: {reply}"
        await expect_push(a, bob, name="Robert")
        await quiet(a)
        no_pushes(a)
        _, items = await roster_get(a)
        assert sorted(items) == sorted([bob, carol]), items
        await close_all(a)

    scenario_with_pool(body)


# Q5 and storage: the roster, the subscription states and a pending
# inbound request survive re-login and a router restart (the router's
# cache is gone, so they come from storage).
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_roster_and_subscriptions_persist(parley, backend):
    inst = parley(backend=backend)
    alice, bob, carol = new_user(inst, "alice"), new_user(inst, "bob"), new_user(inst, "carol")
    zed = f"zed@{inst.domain}"

    async def setup(pool):
        a = await connect(inst, f"{alice}/one", 0, roster=True, pool=pool)
        b = await connect(inst, f"{bob}/one", 1, roster=True, pool=pool)
        c = await connect(inst, f"{carol}/one", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        reply = await roster_set(a, roster_item_el(bob, "Bob", ["Friends", "Work"]))
        assert reply["type"] == "result", reply
        await expect_push(a, bob, subscription="both", name="Bob", groups=["Friends", "Work"])
        reply = await roster_set(a, roster_item_el(zed, "Zed"))
        assert reply["type"] == "result", reply
        await expect_push(a, zed, subscription="none")
        c.send_presence(pto=alice, ptype="subscribe")            # left unanswered
        await expect_presence(a, carol, type="subscribe")
        ver, items = await roster_get(a)
        await close_all(a, b, c)
        return ver, items

    async def check(pool, ver, items, what):
        b = await connect(inst, f"{bob}/two", 0, roster=True, pool=pool, status="back")
        a = await connect(inst, f"{alice}/two", 1, roster=True, pool=pool)
        assert (a.roster_ver, a.roster_items) == (ver, items), \
            f"{what}: alice's roster changed: {ver} {items} -> {a.roster_ver} {a.roster_items}"
        assert b.roster_items.get(alice, {}).get("subscription") == "both", f"{what}: bob's roster {b.roster_items}"
        assert await roster_get(a, ver=ver) is None, f"{what}: get with the stored ver is not empty"
        # The subscription is in force: each sees the other's presence.
        await expect_presence(a, b.boundjid.full, status="back")
        await expect_presence(b, a.boundjid.full)
        # The pending request is delivered again (P1).
        await expect_presence(a, carol, type="subscribe")
        await close_all(a, b)

    ver, items = scenario_with_pool(setup)
    assert set(items) == {bob, zed}, items
    assert items[bob] == {"jid": bob, "name": "Bob", "subscription": "both", "ask": None,
                          "groups": ["Friends", "Work"]}, items[bob]
    assert items[zed]["subscription"] == "none" and items[zed]["ask"] is None, items[zed]
    scenario_with_pool(lambda pool: check(pool, ver, items, "after re-login"))
    assert inst.kill("router", signal.SIGTERM) == 0
    inst.start("router")
    inst.wait_ready()
    scenario_with_pool(lambda pool: check(pool, ver, items, "after router restart"))


# ---------------------------------------------------------------------------
# Subscriptions (§3)


# P1, P2, P5: the four-step handshake between alice (gateway-1) and bob
# (gateway-2): none+ask -> to -> both on alice's side, from -> from+ask ->
# both on bob's; each 'subscribed' is followed by the contact's presence.
# Re-login shows 'both' on both sides.
def test_subscription_handshake_reaches_both(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, status="alice here", pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, status="bob here", pool=pool)
        await quiet(a, b)
        assert not presences_from(a, bob) and not presences_from(b, alice), "presence before any subscription"

        a.send_presence(pto=bob, ptype="subscribe")
        va1, _ = await expect_push(a, bob, subscription="none", ask="subscribe")
        await expect_presence(b, alice, type="subscribe")              # P5: from alice's bare JID
        await quiet(b)
        no_pushes(b)                                                    # a request is no roster item

        b.send_presence(pto=alice, ptype="subscribed")
        vb1, _ = await expect_push(b, alice, subscription="from", ask=None)
        va2, _ = await expect_push(a, bob, subscription="to", ask=None)
        await expect_presence(a, bob, type="subscribed")
        await expect_presence(a, b.boundjid.full, status="bob here")  # P2: bob's current presence

        b.send_presence(pto=alice, ptype="subscribe")
        vb2, _ = await expect_push(b, alice, subscription="from", ask="subscribe")
        await expect_presence(a, bob, type="subscribe")

        a.send_presence(pto=bob, ptype="subscribed")
        va3, _ = await expect_push(a, bob, subscription="both", ask=None)
        vb3, _ = await expect_push(b, alice, subscription="both", ask=None)
        await expect_presence(b, alice, type="subscribed")
        await expect_presence(b, a.boundjid.full, status="alice here")
        assert va1 < va2 < va3 and vb1 < vb2 < vb3, (va1, va2, va3, vb1, vb2, vb3)

        await quiet(a, b)
        no_pushes(a)
        no_pushes(b)
        await close_all(a, b)
        a = await connect(server, f"{alice}/a2", 1, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b2", 0, roster=True, pool=pool)
        assert a.roster_items[bob]["subscription"] == "both" and a.roster_items[bob]["ask"] is None, a.roster_items
        assert b.roster_items[alice]["subscription"] == "both" and b.roster_items[alice]["ask"] is None, \
            b.roster_items
        assert int(a.roster_ver) == va3 and int(b.roster_ver) == vb3, (a.roster_ver, va3, b.roster_ver, vb3)
        await close_all(a, b)

    scenario_with_pool(body)


# P1: a request made while bob is offline reaches him at his next login,
# and at every login until he answers; then alice gets 'subscribed' and
# bob's presence, and bob is not asked again.
def test_pending_request_delivered_at_login(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, pool=pool)
        a.send_presence(pto=bob, ptype="subscribe")
        await expect_push(a, bob, subscription="none", ask="subscribe")

        for n in (1, 2):
            b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
            await expect_presence(b, alice, type="subscribe")
            assert alice not in b.roster_items, f"login {n}: pending request shown as a roster item"
            if n == 1:
                await close_all(b)

        b.send_presence(pto=alice, ptype="subscribed")
        await expect_push(b, alice, subscription="from")
        await expect_push(a, bob, subscription="to", ask=None)
        await expect_presence(a, bob, type="subscribed")
        await expect_presence(a, b.boundjid.full)
        await close_all(b)

        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        await roster_barrier(b)
        await quiet(b)
        asked = [p for p in presences_from(b, alice) if p["type"] == "subscribe"]
        assert not asked, f"answered request delivered again: {asked}"
        await close_all(a, b)

    scenario_with_pool(body)


# P3, P4: from 'both', alice's unsubscribe leaves alice 'from' / bob 'to'
# and alice gets bob's unavailable; then alice's unsubscribed (she cancels
# bob's subscription) leaves both 'none' and bob gets alice's unavailable.
# Afterwards presence no longer flows either way.
def test_unsubscribe_and_unsubscribed(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        await expect_presence(a, b.boundjid.full)
        await expect_presence(b, a.boundjid.full)

        a.send_presence(pto=bob, ptype="unsubscribe")
        await expect_push(a, bob, subscription="from", ask=None)
        await expect_push(b, alice, subscription="to", ask=None)
        await expect_presence(b, alice, type="unsubscribe")
        await expect_presence(a, b.boundjid.full, type="unavailable")

        a.send_presence(pto=bob, ptype="unsubscribed")
        await expect_push(a, bob, subscription="none", ask=None)
        await expect_push(b, alice, subscription="none", ask=None)
        await expect_presence(b, alice, type="unsubscribed")
        await expect_presence(b, a.boundjid.full, type="unavailable")

        await quiet(a, b)
        seen_a, seen_b = len(presences_from(a, bob)), len(presences_from(b, alice))
        a.send_presence(pstatus="after")
        b.send_presence(pstatus="after")
        await roster_barrier(a)
        await roster_barrier(b)
        await quiet(a, b)
        assert presences_from(a, bob)[seen_a:] == [], presences_from(a, bob)[seen_a:]
        assert presences_from(b, alice)[seen_b:] == [], presences_from(b, alice)[seen_b:]
        no_pushes(a)
        no_pushes(b)
        await close_all(a, b)

    scenario_with_pool(body)


# P2: 'subscribed' without a pending request (no pre-approval) is ignored:
# no roster change on either side, nothing delivered.
def test_unrequested_subscribed_ignored(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        b.send_presence(pto=alice, ptype="subscribed")
        await roster_barrier(b)
        await roster_barrier(a)
        await quiet(a, b)
        no_pushes(a)
        no_pushes(b)
        assert presences_from(a, bob) == [], presences_from(a, bob)
        _, items = await roster_get(a)
        assert items == {}, items
        _, items = await roster_get(b)
        assert items == {}, items
        await close_all(a, b)

    scenario_with_pool(body)


# Q4, P6: alice removes bob (mutual subscription) from her roster: her
# resources end with a 'remove' push; bob ends at 'none', receives
# unsubscribe and unsubscribed from alice's bare JID and alice's
# unavailable; alice receives bob's unavailable. Presence stops flowing.
def test_roster_remove_cancels_subscriptions(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        await expect_presence(a, b.boundjid.full)
        await expect_presence(b, a.boundjid.full)
        await quiet(a, b)

        reply = await roster_set(a, roster_item_el(bob, subscription="remove"))
        assert reply["type"] == "result", reply
        await expect_presence(b, alice, type="unsubscribe")
        await expect_presence(b, alice, type="unsubscribed")
        await expect_presence(b, a.boundjid.full, type="unavailable")
        await expect_presence(a, b.boundjid.full, type="unavailable")
        await quiet(a, b)
        pushes_a = [a.pushes.get_nowait() for _ in range(a.pushes.qsize())]
        pushes_b = [b.pushes.get_nowait() for _ in range(b.pushes.qsize())]
        assert pushes_a and pushes_a[-1]["items"][0]["subscription"] == "remove", \
            f"alice's pushes do not end with the removal: {[p['xml'] for p in pushes_a]}"
        assert pushes_b and pushes_b[-1]["items"][0] == {"jid": alice, "name": None, "subscription": "none",
                                                         "ask": None, "groups": []}, \
            f"bob's pushes do not end at 'none': {[p['xml'] for p in pushes_b]}"
        _, items = await roster_get(a)
        assert bob not in items, items
        _, items = await roster_get(b)
        assert items[alice]["subscription"] == "none", items

        seen_a, seen_b = len(presences_from(a, bob)), len(presences_from(b, alice))
        a.send_presence(pstatus="after")
        b.send_presence(pstatus="after")
        await roster_barrier(a)
        await roster_barrier(b)
        await quiet(a, b)
        assert presences_from(a, bob)[seen_a:] == [], presences_from(a, bob)[seen_a:]
        assert presences_from(b, alice)[seen_b:] == [], presences_from(b, alice)[seen_b:]
        await close_all(a, b)

    scenario_with_pool(body)


# ---------------------------------------------------------------------------
# Presence (§4)


# V1, V2: with a mutual subscription and bob online, alice's initial
# presence (status, priority) reaches bob, and alice receives bob's current
# presence with his status and priority (probe).
def test_initial_presence_and_probe(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/setup", 0, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        await close_all(a)
        b.send_presence(pstatus="in a meeting", ppriority=2)
        await roster_barrier(b)

        a = await connect(server, f"{alice}/work", 0, presence=False, pool=pool)
        a.send_presence(pstatus="at work", ppriority=5)
        got = await expect_presence(b, a.boundjid.full, status="at work")
        assert got["priority"] == 5, got
        got = await expect_presence(a, b.boundjid.full, status="in a meeting")
        assert got["priority"] == 2, got

        a.send_presence(pstatus="still at work", ppriority=5)          # V3: later presence, no probe
        await expect_presence(b, a.boundjid.full, status="still at work", priority=5)
        await roster_barrier(a)
        await quiet(a)
        from_bob = [p for p in presences_from(a, bob) if p["type"] is None]
        assert len(from_bob) == 1, f"bob's presence delivered {len(from_bob)} times: {from_bob}"
        await close_all(a, b)

    scenario_with_pool(body)


# V4, L1-L3: alice leaves with unavailable status "gone home" and closes
# her stream: bob gets exactly one unavailable with that status; bob's
# XEP-0012 query on alice says a few seconds and "gone home"; the query to
# the server says its uptime.
def test_logout_status_and_last_activity(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        await expect_presence(b, a.boundjid.full)
        assert await last_query(b, alice) == ("result", 0, None), "online account: seconds should be 0"

        a.send_presence(ptype="unavailable", pstatus="gone home")
        await close_all(a)
        got = await expect_presence(b, a.boundjid.full, type="unavailable", timeout=5)
        assert got["status"] == "gone home", got
        await asyncio.sleep(COUNT_WINDOW_S)
        gone = [p for p in presences_from(b, a.boundjid.full) if p["type"] == "unavailable"]
        assert len(gone) == 1, f"bob got {len(gone)} unavailable presences from alice: {gone}"

        kind, seconds, text = await last_query(b, alice)
        assert kind == "result", (kind, seconds, text)
        assert 0 <= seconds <= 5, f"alice left {seconds} s ago?"
        assert text == "gone home", text

        kind, uptime, text = await last_query(b, server.domain)
        assert kind == "result", (kind, uptime, text)
        # The router started shortly before the instance was ready.
        ready_for = time.monotonic() - server.started_at
        assert ready_for - 2 <= uptime <= ready_for + 20, \
            f"server uptime {uptime} s, but the instance has been ready for {ready_for:.1f} s"
        await close_all(b)

    scenario_with_pool(body)


# V5: alice's connection dropped without </stream:stream>: bob receives
# exactly one unavailable from alice's full JID within a few seconds, and
# last activity is recorded without a status.
def test_dropped_connection_unavailable_once(server):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")

    async def body(pool):
        a = await connect(server, f"{alice}/a", 0, roster=True, pool=pool)
        b = await connect(server, f"{bob}/b", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        await expect_presence(b, a.boundjid.full)
        await quiet(a, b)

        dropped = time.monotonic()
        drop(a)
        got = await expect_presence(b, a.boundjid.full, type="unavailable", timeout=5)
        delay = got["at"] - dropped
        await asyncio.sleep(COUNT_WINDOW_S)
        gone = [p for p in presences_from(b, a.boundjid.full) if p["type"] == "unavailable"]
        assert len(gone) == 1, f"bob got {len(gone)} unavailable presences from alice: {gone}"
        assert delay < 3, f"unavailable took {delay:.1f} s"

        kind, seconds, text = await last_query(b, alice)
        assert (kind, text) == ("result", None) and 0 <= seconds <= 5, (kind, seconds, text)
        await close_all(b)

    scenario_with_pool(body)


# V1, V3, L2: carol, who has no subscription to alice (even with alice
# having her in the roster), gets forbidden for alice's last activity and
# none of alice's presence, neither her initial presence nor a change.
def test_non_contact_sees_nothing(server):
    alice, carol = new_user(server, "alice"), new_user(server, "carol")

    async def body(pool):
        c = await connect(server, f"{carol}/c", 1, roster=True, status="carol here", pool=pool)
        a = await connect(server, f"{alice}/a", 0, roster=True, status="hello", pool=pool)
        reply = await roster_set(a, roster_item_el(carol, "Carol"))
        assert reply["type"] == "result", reply
        await expect_push(a, carol, subscription="none")
        a.send_presence(pstatus="busy", pshow="dnd")
        await roster_barrier(a)
        await quiet(a, c)
        assert presences_from(c, alice) == [], f"carol got alice's presence: {presences_from(c, alice)}"
        assert presences_from(a, carol) == [], f"alice got carol's presence: {presences_from(a, carol)}"

        assert await last_query(c, alice) == ("error", "auth", "forbidden")
        await close_all(a)
        await asyncio.sleep(0.3)
        assert await last_query(c, alice) == ("error", "auth", "forbidden"), "forbidden only while online?"
        assert presences_from(c, alice) == [], f"carol got alice's presence: {presences_from(c, alice)}"
        await close_all(c)

    scenario_with_pool(body)


# V6: directed presence from alice to carol (no subscription) reaches
# carol; when alice's connection drops, carol gets alice's unavailable,
# exactly once. Also when alice never sent initial presence (§4.6.3).
@pytest.mark.parametrize("how", ["bare", "full", "without-initial-presence"])
def test_directed_presence_then_drop(server, how):
    alice, carol = new_user(server, "alice"), new_user(server, "carol")

    async def body(pool):
        c = await connect(server, f"{carol}/c", 1, roster=True, pool=pool)
        a = await connect(server, f"{alice}/a", 0, roster=True, presence=how != "without-initial-presence",
                          pool=pool)
        await roster_barrier(a)
        a.send_presence(pto=c.boundjid.full if how == "full" else carol, pstatus="hi carol")
        await expect_presence(c, a.boundjid.full, status="hi carol")
        await quiet(a, c)
        drop(a)
        await expect_presence(c, a.boundjid.full, type="unavailable", timeout=5)
        await asyncio.sleep(COUNT_WINDOW_S)
        gone = [p for p in presences_from(c, alice) if p["type"] == "unavailable"]
        assert len(gone) == 1, f"carol got {len(gone)} unavailable presences from alice: {gone}"
        await close_all(c)

    scenario_with_pool(body)


# V1, V2, V3, V5: alice's two resources (one per gateway) see each other's
# presence: the first gets the second's initial presence, the second gets
# the first's by the probe, changes are seen, and the end of one session is
# seen exactly once by the other.
def test_own_resources_see_each_other(server):
    alice = new_user(server, "alice")

    async def body(pool):
        a1 = await connect(server, f"{alice}/one", 0, status="first", priority=1, pool=pool)
        await roster_barrier(a1)
        a2 = await connect(server, f"{alice}/two", 1, status="second", priority=2, pool=pool)
        await expect_presence(a1, a2.boundjid.full, status="second", priority=2)
        await expect_presence(a2, a1.boundjid.full, status="first", priority=1)

        a2.send_presence(pstatus="second, changed", ppriority=3)
        await expect_presence(a1, a2.boundjid.full, status="second, changed", priority=3)
        a1.send_presence(pstatus="first, changed", ppriority=1)
        await expect_presence(a2, a1.boundjid.full, status="first, changed", priority=1)

        await close_all(a2)
        await expect_presence(a1, a2.boundjid.full, type="unavailable", timeout=5)
        await asyncio.sleep(COUNT_WINDOW_S)
        gone = [p for p in presences_from(a1, a2.boundjid.full) if p["type"] == "unavailable"]
        assert len(gone) == 1, f"alice/one got {len(gone)} unavailable presences from alice/two: {gone}"
        await close_all(a1)

    scenario_with_pool(body)


# Issue "Sessions", gateway failure: alice's gateway is killed (-9); within
# the heartbeat timeout the router ends her session as a dropped one, so
# bob, on the other gateway, sees her unavailable exactly once (V5).
def test_gateway_killed_contacts_see_unavailable(parley):
    inst = parley(gateways=2, storage=1, router={"peer_timeout_ms": 2000})
    alice, bob = new_user(inst, "alice"), new_user(inst, "bob")

    async def body(pool):
        a = await connect(inst, f"{alice}/a", 0, roster=True, pool=pool)
        b = await connect(inst, f"{bob}/b", 1, roster=True, pool=pool)
        await subscribe_mutually(a, b)
        await expect_presence(b, a.boundjid.full)
        await quiet(a, b)
        killed = time.monotonic()
        inst.kill("gateway-1", signal.SIGKILL)
        got = await expect_presence(b, a.boundjid.full, type="unavailable", timeout=8)
        assert got["at"] - killed < 6, f"unavailable only after {got['at'] - killed:.1f} s"
        await asyncio.sleep(COUNT_WINDOW_S)
        gone = [p for p in presences_from(b, a.boundjid.full) if p["type"] == "unavailable"]
        assert len(gone) == 1, f"bob got {len(gone)} unavailable presences from alice: {gone}"
        await close_all(b)

    scenario_with_pool(body)
