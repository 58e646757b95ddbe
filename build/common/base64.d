build/common/base64.o: common/base64.c common/base64.h common/util.h
common/base64.h:
common/util.h:
