"""
Idle connections let their XML parser sleep (gateway/idle.c I5, common/xml.c
R7): after a second of silence expat is freed and rebuilt from the stream's
own start tag on the next bytes. A client must not notice: chat after long
pauses, over STARTTLS and direct TLS, a raw stream that declares its own
namespace prefix on the header, and a clean close after the pause.
"""
import asyncio
import time

from raw_client import NS_CLIENT, RawClient, tag
from xmpp import exchange, login, run

PASSWORD = "idle-secret"


def test_chat_after_parser_slept(parley):
    inst = parley(gateways=2, storage=1)
    inst.add_user("alice@localhost", PASSWORD)
    inst.add_user("bob@localhost", PASSWORD)

    async def scenario():
        a = await login(inst, "alice@localhost", PASSWORD, gateway=0)
        b = await login(inst, "bob@localhost", PASSWORD, gateway=1, direct_tls=True)
        try:
            for round_ in range(2):
                await asyncio.sleep(2.5)  # > 1 s of silence on both: both parsers sleep
                await exchange(a, b, tag=f"after pause {round_}")
        finally:
            await a.close()
            await b.close()

    run(scenario())


def test_prefixes_of_the_stream_header_survive_sleep(parley):
    inst = parley(gateways=1, storage=1)
    inst.add_user("carol@localhost", PASSWORD)
    inst.add_user("dave@localhost", PASSWORD)
    with RawClient(inst) as carol, RawClient(inst) as dave:
        carol.login("carol@localhost", PASSWORD, resource="r")
        dave.login("dave@localhost", PASSWORD, resource="r")
        time.sleep(2.5)
        # The rebuilt parser must be back inside the same stream: the
        # default namespace is still jabber:client, prefixes still resolve,
        # and the end tag still matches the client's own start tag.
        carol.send("<message to='dave@localhost/r' type='chat' id='p1'>"
                   "<body>after sleep</body><x:e xmlns:x='urn:test:e'/></message>")
        m = dave.expect_message("after sleep", timeout=5)
        assert m.find(tag("urn:test:e", "e")) is not None
        assert m.tag == tag(NS_CLIENT, "message")
        time.sleep(2.5)
        carol.send("</stream:stream>")
        carol.wait_closed(timeout=5)
