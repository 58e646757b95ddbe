build/router/reply.o: router/reply.c router/reply.h router/router.h \
 common/config.h common/evzmq.h common/strmap.h common/buf.h \
 common/envelope.h common/log.h router/sessions.h common/stanza.h \
 common/buf.h common/stanza_parse.h common/util.h
router/reply.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
common/buf.h:
common/envelope.h:
common/log.h:
router/sessions.h:
common/stanza.h:
common/buf.h:
common/stanza_parse.h:
common/util.h:
