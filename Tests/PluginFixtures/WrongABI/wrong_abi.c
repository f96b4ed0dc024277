/* Declares the next major version of the plugin ABI and otherwise the complete set of
   entry points: the host must refuse it on the version alone, before calling anything else. */
#include "wrong_abi.h"

uint32_t curec_plugin_abi_version(void) {
    return (uint32_t)(((CUREC_PLUGIN_ABI_VERSION_MAJOR + 1) << 16) | 0);
}

int32_t curec_plugin_create(const uint8_t *config, size_t size, CURecPlugin **out, CURecError *error) {
    (void)config; (void)size; (void)error;
    *out = (CURecPlugin *)0;
    return CUREC_STATUS_INTERNAL;
}
