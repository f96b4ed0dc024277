/* Declares ABI 99.0: the host must refuse it before calling anything else. */
#include <stdint.h>
uint32_t curec_plugin_abi_version(void) { return (99u << 16) | 0u; }
