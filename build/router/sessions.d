build/router/sessions.o: router/sessions.c router/sessions.h \
 router/router.h common/config.h common/evzmq.h common/strmap.h \
 common/envelope.h router/gateways.h common/log.h router/presence.h \
 common/util.h
router/sessions.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
common/envelope.h:
router/gateways.h:
common/log.h:
router/presence.h:
common/util.h:
