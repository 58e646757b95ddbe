build/common/stanza.o: common/stanza.c common/stanza.h common/buf.h \
 common/util.h
common/stanza.h:
common/buf.h:
common/util.h:
