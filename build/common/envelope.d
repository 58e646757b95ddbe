build/common/envelope.o: common/envelope.c common/envelope.h common/buf.h \
 common/util.h
common/envelope.h:
common/buf.h:
common/util.h:
