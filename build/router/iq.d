build/router/iq.o: router/iq.c router/iq.h router/router.h \
 common/config.h common/evzmq.h common/strmap.h common/buf.h \
 router/archive.h router/carbons.h router/last.h router/roster.h \
 common/envelope.h router/jobs.h common/log.h router/reply.h \
 router/sessions.h common/stanza.h common/buf.h common/util.h
router/iq.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
common/buf.h:
router/archive.h:
router/carbons.h:
router/last.h:
router/roster.h:
common/envelope.h:
router/jobs.h:
common/log.h:
router/reply.h:
router/sessions.h:
common/stanza.h:
common/buf.h:
common/util.h:
