/* Exports everything, but refuses to create an instance. */
#include <stdio.h>
#include "curec_plugin.h"
uint32_t curec_plugin_abi_version(void) { return CUREC_PLUGIN_ABI_VERSION; }
int32_t curec_plugin_create(const uint8_t *config, size_t size, CURecPlugin **out, CURecError *error) {
    (void)config; (void)size; (void)out;
    error->code = CUREC_STATUS_INVALID_ARGUMENT;
    snprintf(error->message, sizeof error->message, "the license key in the config is missing");
    return CUREC_STATUS_INVALID_ARGUMENT;
}
int32_t curec_plugin_describe(const CURecPlugin *p, CURecPluginInfo *i) { (void)p; (void)i; return 0; }
int32_t curec_plugin_train(CURecPlugin *p, const CURecDatasetView *d, const CURecTrainCallbacks *c, CURecError *e) {
    (void)p; (void)d; (void)c; (void)e; return 0;
}
int32_t curec_plugin_score_recommender(const CURecPlugin *p, const CURecRecommendRequest *r, float *s, CURecError *e) {
    (void)p; (void)r; (void)s; (void)e; return 0;
}
int32_t curec_plugin_save(const CURecPlugin *p, const char *d, CURecError *e) { (void)p; (void)d; (void)e; return 0; }
int32_t curec_plugin_load(CURecPlugin *p, const char *d, CURecError *e) { (void)p; (void)d; (void)e; return 0; }
void curec_plugin_destroy(CURecPlugin *p) { (void)p; }
