/* The right ABI version but no other entry points. */
#include "curec_plugin.h"
uint32_t curec_plugin_abi_version(void) { return CUREC_PLUGIN_ABI_VERSION; }
int32_t curec_plugin_create(const uint8_t *config, size_t size, CURecPlugin **out, CURecError *error) {
    (void)config; (void)size; (void)out; (void)error;
    return CUREC_STATUS_INTERNAL;
}
