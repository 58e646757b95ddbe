build/common/strmap.o: common/strmap.c common/strmap.h common/util.h
common/strmap.h:
common/util.h:
