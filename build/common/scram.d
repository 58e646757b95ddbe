build/common/scram.o: common/scram.c common/scram.h common/base64.h \
 common/util.h
common/scram.h:
common/base64.h:
common/util.h:
