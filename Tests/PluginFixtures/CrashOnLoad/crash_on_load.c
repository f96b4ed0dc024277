/* A plugin whose very first entry point, the ABI version the host calls on load,
   dereferences NULL: loaded in the daemon's process it would take the daemon down. */
#include "crash_on_load.h"

static volatile uint32_t *nowhere;

uint32_t curec_plugin_abi_version(void) { return *nowhere; }

int32_t curec_plugin_create(const uint8_t *c, size_t n, CURecPlugin **out, CURecError *e) {
    (void)c; (void)n; (void)out; (void)e;
    return CUREC_STATUS_INTERNAL;
}
int32_t curec_plugin_describe(const CURecPlugin *p, CURecPluginInfo *i) { (void)p; (void)i; return 0; }
int32_t curec_plugin_train(CURecPlugin *p, const CURecDatasetView *d, const CURecTrainCallbacks *c, CURecError *e) {
    (void)p; (void)d; (void)c; (void)e;
    return CUREC_STATUS_INTERNAL;
}
int32_t curec_plugin_score_recommender(const CURecPlugin *p, const CURecRecommendRequest *r, float *s, CURecError *e) {
    (void)p; (void)r; (void)s; (void)e;
    return CUREC_STATUS_INTERNAL;
}
int32_t curec_plugin_save(const CURecPlugin *p, const char *d, CURecError *e) { (void)p; (void)d; (void)e; return CUREC_STATUS_INTERNAL; }
int32_t curec_plugin_load(CURecPlugin *p, const char *d, CURecError *e) { (void)p; (void)d; (void)e; return CUREC_STATUS_INTERNAL; }
void curec_plugin_destroy(CURecPlugin *p) { (void)p; }
