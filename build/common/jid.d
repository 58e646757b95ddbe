build/common/jid.o: common/jid.c common/jid.h common/util.h
common/jid.h:
common/util.h:
