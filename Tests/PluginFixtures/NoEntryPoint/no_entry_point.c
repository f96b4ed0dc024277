/* A valid shared library that exports none of curec_plugin.h: the host must refuse it
   because curec_plugin_abi_version is missing. */
#include "no_entry_point.h"

int curec_test_fixture_answer(void) { return 42; }
