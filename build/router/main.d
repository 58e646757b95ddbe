build/router/main.o: router/main.c router/admin.h router/router.h \
 common/config.h common/evzmq.h common/strmap.h router/archive.h \
 router/offline.h common/envelope.h router/gateways.h router/jobs.h \
 common/log.h router/roster.h router/route.h router/sessions.h \
 common/util.h
router/admin.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
router/archive.h:
router/offline.h:
common/envelope.h:
router/gateways.h:
router/jobs.h:
common/log.h:
router/roster.h:
router/route.h:
router/sessions.h:
common/util.h:
