build/common/stanza_parse.o: common/stanza_parse.c common/stanza_parse.h \
 common/stanza.h common/buf.h common/xml.h
common/stanza_parse.h:
common/stanza.h:
common/buf.h:
common/xml.h:
