#ifndef CUREC_TEST_MISBEHAVING_H
#define CUREC_TEST_MISBEHAVING_H
#include "curec_plugin.h"
#endif
