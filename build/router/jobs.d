build/router/jobs.o: router/jobs.c router/jobs.h router/router.h \
 common/config.h common/evzmq.h common/strmap.h common/buf.h \
 common/envelope.h common/log.h common/util.h
router/jobs.h:
router/router.h:
common/config.h:
common/evzmq.h:
common/strmap.h:
common/buf.h:
common/envelope.h:
common/log.h:
common/util.h:
