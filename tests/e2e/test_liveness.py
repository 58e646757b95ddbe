"""
End-to-end liveness: idle detection with XEP-0199 pings (idle.timeout) and
XEP-0198 stream management with resumption (sm.*), against real processes.
Raw clients (raw_client.py) control every byte, so the tests can count
stanzas exactly and drop a connection the way a lost network does; slixmpp
checks that a real client answering pings stays online.

Every test asserts on what was received; every wait has a timeout.
"""
import asyncio
import signal
import time
import uuid

import pytest

import parleylib
from raw_client import (NS_CLIENT, NS_PING, NS_SM, NS_STANZAS, RawClient, describe, is_ping,
                        messages, tag)
from xmpp import login, run

PASSWORD = "correct horse battery staple"
IDLE_TIMEOUT = 4


@pytest.fixture(scope="module")
def idle_server(parley_module):
    """Pings after 2 s of silence, closes after 4 s."""
    return parley_module(gateways=1, storage=1, idle={"timeout": IDLE_TIMEOUT})


@pytest.fixture(scope="module")
def sm_server(parley_module):
    """Default idle and SM settings (no pings during these short tests)."""
    return parley_module(gateways=2, storage=1)


def new_user(inst, prefix="u"):
    jid = f"{prefix}{uuid.uuid4().hex[:10]}@{inst.domain}"
    inst.add_user(jid, PASSWORD)
    return jid


def raw_login(inst, jid, gateway=0, resource=None, bind=True):
    c = RawClient(inst, gateway)
    c.login(jid, PASSWORD, resource=resource, bind=bind)
    return c


def session_fulls(inst, jid):
    r = inst.ctl("sessions", jid.split("/")[0])
    assert r.returncode == 0, r.stderr
    return [v for row in parleylib.parse_table(r.stdout) for v in row.values() if v.startswith(jid.split("/")[0] + "/")]


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.1)


def is_sm(name):
    return lambda el: el.tag == tag(NS_SM, name)


def iq_ping(i, to):
    return f"<iq type='get' id='p{i}' to='{to}'><ping xmlns='{NS_PING}'/></iq>"


def is_result(i):
    return lambda el: el.tag == tag(NS_CLIENT, "iq") and el.get("id") == f"p{i}" and el.get("type") == "result"


def is_error_message(el):
    return el.tag == tag(NS_CLIENT, "message") and el.get("type") == "error"


def error_messages(elements):
    return [el for el in elements if is_error_message(el)]


# ---------------------------------------------------------------------------
# Idle detection


# A bound client that sends nothing is pinged at half the idle timeout; one
# that does not answer is closed with <connection-timeout/> at the full
# timeout, and its session ends.
def test_silent_client_pinged_then_timed_out(idle_server):
    jid = new_user(idle_server, "silent")
    with raw_login(idle_server, jid) as c:
        bound_at = time.monotonic()
        full = c.full
        assert session_fulls(idle_server, jid) == [full]
        ping = c.expect(lambda el: is_ping(el, idle_server.domain), timeout=IDLE_TIMEOUT, what="ping")
        pinged_after = time.monotonic() - bound_at
        assert ping.get("to") == full, describe(ping)
        assert ping.get("id"), describe(ping)
        assert IDLE_TIMEOUT / 2 - 0.5 <= pinged_after <= IDLE_TIMEOUT / 2 + 1.0, pinged_after
        c.wait_closed(timeout=IDLE_TIMEOUT + 2)
        closed_after = time.monotonic() - bound_at
        assert c.stream_errors == ["connection-timeout"], c.stream_errors
        assert IDLE_TIMEOUT - 0.5 <= closed_after <= IDLE_TIMEOUT + 2.5, closed_after
    wait_until(lambda: session_fulls(idle_server, jid) == [], 3, "session end")


# A client that answers every ping stays online past several timeouts, and
# its answers are consumed by the gateway (no error comes back for them).
def test_client_answering_pings_stays_online(idle_server):
    jid = new_user(idle_server, "pong")
    with raw_login(idle_server, jid) as c:
        pings = 0
        deadline = time.monotonic() + 2.5 * IDLE_TIMEOUT
        while time.monotonic() < deadline:
            ping = c.expect(lambda el: is_ping(el, idle_server.domain), timeout=IDLE_TIMEOUT, what="ping")
            c.send(f"<iq type='result' id='{ping.get('id')}' to='{idle_server.domain}'/>")
            pings += 1
        later = c.collect(0.5)
        assert not c.closed, c.stream_errors
        assert pings >= 3, pings
        assert not [el for el in later if el.get("type") == "error"], [describe(el) for el in later]
        assert session_fulls(idle_server, jid) == [c.full]


# Whitespace keepalives alone keep a connection open, and count as activity
# (no ping is needed).
def test_whitespace_keepalive_keeps_connection(idle_server):
    jid = new_user(idle_server, "space")
    with raw_login(idle_server, jid) as c:
        got = []
        deadline = time.monotonic() + 2.5 * IDLE_TIMEOUT
        while time.monotonic() < deadline:
            c.send(b" ")
            got += c.collect(1.0)
        assert not c.closed, c.stream_errors
        assert not [el for el in got if is_ping(el, idle_server.domain)], [describe(el) for el in got]
        assert session_fulls(idle_server, jid) == [c.full]


# A real client (slixmpp answers XEP-0199 pings itself) stays online past
# several timeouts and can still exchange messages.
def test_real_client_stays_online(idle_server):
    a_jid, b_jid = new_user(idle_server, "slixa"), new_user(idle_server, "slixb")

    async def scenario():
        a = await login(idle_server, a_jid, PASSWORD)
        await asyncio.sleep(2.5 * IDLE_TIMEOUT)
        assert not a.closed.is_set(), a.stream_errors
        b = await login(idle_server, b_jid, PASSWORD)
        b.send_message(mto=a.boundjid.full, mbody="still there?", mtype="chat")
        got = await a.next_message()
        assert got["body"] == "still there?"
        await a.close()
        await b.close()

    run(scenario(), timeout=60)


# ---------------------------------------------------------------------------
# Stream management: acknowledgements


# Stream management is offered after authentication, and <enable/> without
# resume is answered with a plain <enabled/>.
def test_sm_offered_and_enabled(sm_server):
    jid = new_user(sm_server, "smfeat")
    with RawClient(sm_server) as c:
        features = c.login(jid, PASSWORD, bind=False)
        assert features.find(tag(NS_SM, "sm")) is not None, describe(features)
        c.bind()
        enabled = c.enable_sm()
        assert enabled.tag == tag(NS_SM, "enabled"), describe(enabled)
        assert enabled.get("resume") is None and enabled.get("id") is None, describe(enabled)


# <enable/> before binding fails with <unexpected-request/>; binding then works.
def test_sm_enable_before_bind_fails(sm_server):
    jid = new_user(sm_server, "smearly")
    with raw_login(sm_server, jid, bind=False) as c:
        failed = c.enable_sm()
        assert failed.tag == tag(NS_SM, "failed"), describe(failed)
        assert failed.find(tag(NS_STANZAS, "unexpected-request")) is not None, describe(failed)
        assert c.bind()


# <r/> is answered with <a h='N'/> after N handled stanzas.
def test_sm_ack_counts_handled_stanzas(sm_server):
    jid = new_user(sm_server, "smack")
    with raw_login(sm_server, jid) as c:
        c.enable_sm()
        c.send("<r xmlns='urn:xmpp:sm:3'/>")
        assert c.expect(is_sm("a")).get("h") == "0"
        for i in range(3):
            c.send(iq_ping(i, sm_server.domain))
        c.send("<r xmlns='urn:xmpp:sm:3'/>")
        assert c.expect(is_sm("a")).get("h") == "3"
        for i in range(3, 10):
            c.send(iq_ping(i, sm_server.domain))
        c.send("<r xmlns='urn:xmpp:sm:3'/>")
        assert c.expect(is_sm("a")).get("h") == "10"


# The server asks for acks: shortly after a stanza went out, and at once
# after every 5 unacknowledged ones; the client's right <a/> is accepted.
def test_sm_server_requests_acks(sm_server):
    jid = new_user(sm_server, "smreq")
    with raw_login(sm_server, jid) as c:
        c.enable_sm(auto_ack=False)
        c.send(iq_ping(0, sm_server.domain))
        c.expect(is_result(0))
        c.expect(is_sm("r"), timeout=3, what="<r/> after one stanza")
        assert c.h_in == 1
        c.ack()
        for i in range(1, 6):
            c.send(iq_ping(i, sm_server.domain))
        for i in range(1, 6):
            c.expect(is_result(i))
        c.expect(is_sm("r"), timeout=0.5, what="<r/> after five stanzas")
        order = [el.tag for el in c.received]
        fifth = max(i for i, el in enumerate(c.received) if is_result(5)(el))
        assert order[fifth + 1] == tag(NS_SM, "r"), [describe(el) for el in c.received[fifth:]]
        c.ack()
        c.collect(0.3)
        assert not c.closed, c.stream_errors


# An <a/> acknowledging stanzas never sent is a stream error.
def test_sm_ack_too_high_is_stream_error(sm_server):
    jid = new_user(sm_server, "smhigh")
    with raw_login(sm_server, jid) as c:
        c.enable_sm()
        c.send("<a xmlns='urn:xmpp:sm:3' h='99'/>")
        c.wait_closed()
        assert c.stream_errors == ["undefined-condition"], c.stream_errors


# ---------------------------------------------------------------------------
# Stream management: resumption


def enable_resume(c):
    enabled = c.enable_sm(resume=True)
    assert enabled.tag == tag(NS_SM, "enabled") and enabled.get("resume") == "true", describe(enabled)
    assert enabled.get("id") and int(enabled.get("max")) > 0, describe(enabled)
    return enabled.get("id")


def resume(c, previd, h):
    """Sends <resume/> with our count h; counting goes on from h (the
    resent stanzas may come in the same read as <resumed/>)."""
    c.count_stanzas()
    c.h_in = h
    c.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")
    return c.expect(lambda el: el.tag in (tag(NS_SM, "resumed"), tag(NS_SM, "failed")), what="resumed")


# A session whose connection drops stays online (the router is not told);
# a new connection resumes it: the message sent meanwhile arrives, the one
# already acknowledged does not come again, the full JID and the routing
# identity are the same, and the other party never sees an error.
def test_sm_resume_after_drop(sm_server):
    a_jid, b_jid = new_user(sm_server, "resa"), new_user(sm_server, "resb")
    bob = raw_login(sm_server, b_jid, gateway=1)
    alice = raw_login(sm_server, a_jid, resource="phone")
    try:
        full = alice.full
        previd = enable_resume(alice)
        alice.send("<presence/>")
        bob.message(full, "before the drop")
        alice.expect_message("before the drop")
        alice.ack()
        time.sleep(0.2)
        alice.abort()
        time.sleep(0.5)
        assert session_fulls(sm_server, a_jid) == [full], "the session must stay while detached"
        bob.message(full, "while away")
        time.sleep(0.3)

        alice2 = raw_login(sm_server, a_jid, bind=False)
        resumed = resume(alice2, previd, alice.h_in)
        assert resumed.tag == tag(NS_SM, "resumed"), describe(resumed)
        assert resumed.get("previd") == previd and resumed.get("h") == "1", describe(resumed)
        alice2.expect_message("while away")
        alice2.collect(0.5)
        bodies = [m.findtext(tag(NS_CLIENT, "body")) for m in messages(alice2.received)]
        assert bodies.count("while away") == 1 and "before the drop" not in bodies, bodies
        assert session_fulls(sm_server, a_jid) == [full]

        alice2.message(bob.full, "back again")
        got = bob.expect_message("back again")
        assert got.get("from") == full, describe(got)
        alice2.send("<r xmlns='urn:xmpp:sm:3'/>")
        assert alice2.expect(is_sm("a")).get("h") == "2"
        assert not error_messages(bob.received), [describe(el) for el in error_messages(bob.received)]
        alice2.close()
    finally:
        bob.close()


# A resume while the old connection still looks open takes the session
# over: the old connection gets a stream error, the new one the traffic.
def test_sm_resume_takes_over_open_connection(sm_server):
    a_jid, b_jid = new_user(sm_server, "tkoa"), new_user(sm_server, "tkob")
    with raw_login(sm_server, b_jid, gateway=1) as bob, raw_login(sm_server, a_jid) as alice:
        previd = enable_resume(alice)
        with raw_login(sm_server, a_jid, bind=False) as alice2:
            assert resume(alice2, previd, 0).tag == tag(NS_SM, "resumed")
            alice.wait_closed()
            assert alice.stream_errors == ["conflict"], alice.stream_errors
            bob.message(alice.full, "to the new connection")
            alice2.expect_message("to the new connection")
            assert session_fulls(sm_server, a_jid) == [alice.full]


# An unknown previd, or one naming another user's session, fails with
# <item-not-found/>; the client may then bind normally.
def test_sm_resume_unknown_fails(sm_server):
    a_jid, m_jid = new_user(sm_server, "unka"), new_user(sm_server, "unkm")
    with raw_login(sm_server, a_jid) as alice:
        previd = enable_resume(alice)
        with raw_login(sm_server, m_jid, bind=False) as mallory:
            for bogus in ("1-0123456789abcdef", previd):
                failed = resume(mallory, bogus, 0)
                assert failed.tag == tag(NS_SM, "failed"), describe(failed)
                assert failed.find(tag(NS_STANZAS, "item-not-found")) is not None, describe(failed)
            assert mallory.bind()
        alice.collect(0.3)
        assert not alice.closed, alice.stream_errors


# Resumption works only on the gateway that holds the session; elsewhere
# the client is told item-not-found and binds anew.
def test_sm_resume_on_other_gateway_fails(sm_server):
    a_jid = new_user(sm_server, "othgw")
    alice = raw_login(sm_server, a_jid, gateway=0)
    previd = enable_resume(alice)
    alice.abort()
    with raw_login(sm_server, a_jid, gateway=1, bind=False) as alice2:
        failed = resume(alice2, previd, 0)
        assert failed.find(tag(NS_STANZAS, "item-not-found")) is not None, describe(failed)
        assert alice2.bind()


# A clean close (</stream:stream>) or a kick ends a resumable session at
# once: nothing is kept to resume.
@pytest.mark.parametrize("how", ["close", "kick"])
def test_sm_clean_end_is_not_resumable(sm_server, how):
    a_jid = new_user(sm_server, "end" + how)
    alice = raw_login(sm_server, a_jid)
    previd = enable_resume(alice)
    if how == "close":
        alice.send("</stream:stream>")
    else:
        r = sm_server.ctl("kick", alice.full, "testing")
        assert r.returncode == 0, r.stderr
    alice.wait_closed()
    alice.close()
    wait_until(lambda: session_fulls(sm_server, a_jid) == [], 3, "session end")
    with raw_login(sm_server, a_jid, bind=False) as alice2:
        assert resume(alice2, previd, 0).find(tag(NS_STANZAS, "item-not-found")) is not None


# A new login binding the resource of a detached session replaces it at
# once (the conflict kick): the detached session ends, what it held is
# kept offline and reaches the new login; the new login gets the resource.
def test_sm_detached_session_replaced_by_new_bind(sm_server):
    a_jid, b_jid = new_user(sm_server, "repa"), new_user(sm_server, "repb")
    with raw_login(sm_server, b_jid, gateway=1) as bob:
        alice = raw_login(sm_server, a_jid, resource="tablet")
        full = alice.full
        previd = enable_resume(alice)
        alice.abort()
        time.sleep(0.3)
        bob.message(full, "held for the old session", mid="r1")
        time.sleep(0.3)
        with raw_login(sm_server, a_jid, resource="tablet") as again:
            assert again.full == full
            again.send("<presence/>")
            check_kept(again, ["held for the old session"])
            assert not error_messages(bob.received), "the sender must not get an error"
            assert session_fulls(sm_server, a_jid) == [full]
            with raw_login(sm_server, a_jid, bind=False) as late:
                assert resume(late, previd, 0).find(tag(NS_STANZAS, "item-not-found")) is not None


# A gateway that shuts down ends its detached sessions at once; what they
# held is kept for offline delivery and the sender gets no error.
def test_sm_gateway_shutdown_ends_detached_session(parley):
    inst = parley(gateways=2, storage=1)
    a_jid, b_jid = new_user(inst, "shda"), new_user(inst, "shdb")
    with raw_login(inst, b_jid, gateway=1) as bob:
        alice = raw_login(inst, a_jid, gateway=0)
        full = alice.full
        enable_resume(alice)
        alice.abort()
        time.sleep(0.3)
        bob.message(full, "to a detached session", mid="s1")
        time.sleep(0.3)
        assert session_fulls(inst, a_jid) == [full]
        assert inst.kill("gateway-1", signal.SIGTERM) == 0
        wait_until(lambda: session_fulls(inst, a_jid) == [], 5, "session end")
        with raw_login(inst, a_jid, gateway=1) as again:
            again.send("<presence/>")
            check_kept(again, ["to a detached session"])
        assert not error_messages(bob.received), "the sender must not get an error"


# More unacknowledged stanzas than sm.max_queue end a detached session;
# every one of them is kept for the next login.
def test_sm_max_queue_ends_detached_session(parley):
    inst = parley(gateways=1, storage=1, sm={"max_queue": 3})
    a_jid, b_jid = new_user(inst, "mqa"), new_user(inst, "mqb")
    with raw_login(inst, b_jid) as bob:
        alice = raw_login(inst, a_jid)
        full = alice.full
        enable_resume(alice)
        alice.abort()
        time.sleep(0.3)
        for i in range(3):
            bob.message(full, f"fits {i}", mid=f"q{i}")
        time.sleep(0.5)
        assert session_fulls(inst, a_jid) == [full] and not error_messages(bob.received)
        bob.message(full, "one too many", mid="q3")
        wait_until(lambda: session_fulls(inst, a_jid) == [], 3, "session end")
        with raw_login(inst, a_jid) as again:
            again.send("<presence/>")
            check_kept(again, ["fits 0", "fits 1", "fits 2", "one too many"])
        assert not error_messages(bob.received), "the sender must not get an error"


# Stream management without resumption: a drop ends the session and the
# unacknowledged message is kept for the next login (offline storage).
def test_sm_without_resume_keeps_on_drop(sm_server):
    a_jid, b_jid = new_user(sm_server, "nrsa"), new_user(sm_server, "nrsb")
    with raw_login(sm_server, b_jid, gateway=1) as bob:
        alice = raw_login(sm_server, a_jid)
        full = alice.full
        alice.enable_sm(auto_ack=False)
        bob.message(full, "never acknowledged", mid="m1")
        alice.expect_message("never acknowledged")
        alice.abort()
        wait_until(lambda: session_fulls(sm_server, a_jid) == [], 3, "session end")
        with raw_login(sm_server, a_jid) as again:
            again.send("<presence/>")
            check_kept(again, ["never acknowledged"])
        assert not error_messages(bob.received), "the sender must not get an error"


def check_kept(client, bodies):
    """The messages a session never acknowledged were kept for offline
    delivery: the next login gets them, in order, with a delay stamp."""
    for body in bodies:
        m = client.expect_message(body, timeout=5)
        assert m.find(tag("urn:xmpp:delay", "delay")) is not None, describe(m)


# A resumable session not resumed in time ends (the router hears of it only
# then) and the unacknowledged messages are kept for the next login;
# a late resume is refused.
def test_sm_resume_timeout_keeps_offline(parley):
    inst = parley(gateways=1, storage=1, sm={"resume_timeout": 2})
    a_jid, b_jid = new_user(inst, "expa"), new_user(inst, "expb")
    with raw_login(inst, b_jid) as bob:
        alice = raw_login(inst, a_jid)
        full = alice.full
        previd = enable_resume(alice)
        bob.message(full, "delivered, not acked", mid="x1")
        alice.expect_message("delivered, not acked")
        alice.abort()
        time.sleep(0.3)
        bob.message(full, "queued while away", mid="x2")
        time.sleep(0.5)
        assert session_fulls(inst, a_jid) == [full], "the session must stay while detached"
        wait_until(lambda: session_fulls(inst, a_jid) == [], 6, "session end")
        with raw_login(inst, a_jid, bind=False) as alice2:
            failed = resume(alice2, previd, alice.h_in)
            assert failed.find(tag(NS_STANZAS, "item-not-found")) is not None, describe(failed)
            assert alice2.bind()
            alice2.send("<presence/>")
            check_kept(alice2, ["delivered, not acked", "queued while away"])
        assert not error_messages(bob.received), "the sender must not get an error"


# A silent resumable client is closed by the idle timeout like any other,
# but its session waits to be resumed.
def test_idle_timeout_keeps_resumable_session(parley):
    inst = parley(gateways=1, storage=1, idle={"timeout": 2})
    a_jid = new_user(inst, "idres")
    alice = raw_login(inst, a_jid)
    full = alice.full
    previd = enable_resume(alice)
    alice.auto_ack = False
    alice.wait_closed(timeout=6)
    assert alice.stream_errors == ["connection-timeout"], alice.stream_errors
    assert session_fulls(inst, a_jid) == [full]
    with raw_login(inst, a_jid, bind=False) as alice2:
        resumed = resume(alice2, previd, alice.h_in)
        assert resumed.tag == tag(NS_SM, "resumed"), describe(resumed)
        assert session_fulls(inst, a_jid) == [full]


if __name__ == "__main__":
    import sys
    sys.exit(pytest.main([__file__, "-v"]))
