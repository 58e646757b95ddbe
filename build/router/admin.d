build/router/admin.o: router/admin.c router/admin.h router/router.h \
 common/config.h common/evzmq.h common/strmap.h router/archive.h \
 common/buf.h common/envelope.h router/gateways.h common/jid.h \
 router/jobs.h common/log.h common/scram.h router/sessions.h \
 common/timestamp.h common/util.h
router/admin.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
router/archive.h:
common/buf.h:
common/envelope.h:
router/gateways.h:
common/jid.h:
router/jobs.h:
common/log.h:
common/scram.h:
router/sessions.h:
common/timestamp.h:
common/util.h:
