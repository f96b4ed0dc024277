#ifndef CUREC_TEST_WRONG_ABI_H
#define CUREC_TEST_WRONG_ABI_H
#include "curec_plugin.h"
#endif
