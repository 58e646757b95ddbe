build/common/evzmq.o: common/evzmq.c common/evzmq.h
common/evzmq.h:
