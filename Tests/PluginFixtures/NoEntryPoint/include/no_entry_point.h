#ifndef CUREC_TEST_NO_ENTRY_POINT_H
#define CUREC_TEST_NO_ENTRY_POINT_H
/* The only function of the library: not a CURec entry point. */
int curec_test_fixture_answer(void);
#endif
