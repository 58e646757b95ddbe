build/router/route.o: router/route.c router/route.h router/router.h \
 common/config.h common/evzmq.h common/strmap.h router/archive.h \
 common/buf.h router/carbons.h router/intercept.h router/offline.h \
 router/payload.h common/stanza.h common/buf.h common/timestamp.h \
 common/envelope.h router/iq.h common/log.h router/presence.h \
 router/reply.h router/sessions.h common/util.h
router/route.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
router/archive.h:
common/buf.h:
router/carbons.h:
router/intercept.h:
router/offline.h:
router/payload.h:
common/stanza.h:
common/buf.h:
common/timestamp.h:
common/envelope.h:
router/iq.h:
common/log.h:
router/presence.h:
router/reply.h:
router/sessions.h:
common/util.h:
