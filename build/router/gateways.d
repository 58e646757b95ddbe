build/router/gateways.o: router/gateways.c router/gateways.h \
 router/router.h common/config.h common/evzmq.h common/strmap.h \
 router/jobs.h common/envelope.h common/log.h router/sessions.h \
 common/util.h
router/gateways.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
router/jobs.h:
common/envelope.h:
common/log.h:
router/sessions.h:
common/util.h:
