build/common/buf.o: common/buf.c common/buf.h common/util.h
common/buf.h:
common/util.h:
