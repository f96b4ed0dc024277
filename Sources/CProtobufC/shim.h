#ifndef CUREC_CPROTOBUFC_SHIM_H
#define CUREC_CPROTOBUFC_SHIM_H
#include <protobuf-c/protobuf-c.h>
#endif
