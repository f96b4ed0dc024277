#ifndef CUREC_TEST_CRASH_ON_LOAD_H
#define CUREC_TEST_CRASH_ON_LOAD_H
#include "curec_plugin.h"
#endif
