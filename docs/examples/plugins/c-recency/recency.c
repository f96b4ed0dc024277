/* A recency recommender: an item scores the timestamp of its newest training interaction,
 * so recently consumed items rank first. Example plugin from docs/plugin-guide.md. */
#include <stdio.h>
#include <stdlib.h>
#include <curec_plugin.h>

struct CURecPlugin {
    uint32_t item_count;
    float *last_seen; /* NULL until trained */
};

static int32_t fail(CURecError *error, int32_t code, const char *message) {
    if (error) {
        error->code = code;
        snprintf(error->message, sizeof error->message, "%s", message);
    }
    return code;
}

uint32_t curec_plugin_abi_version(void) { return CUREC_PLUGIN_ABI_VERSION; }

int32_t curec_plugin_create(const uint8_t *config, size_t size, CURecPlugin **out, CURecError *error) {
    (void)config; (void)size; /* no configuration */
    CURecPlugin *plugin = calloc(1, sizeof *plugin);
    if (!plugin) return fail(error, CUREC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    *out = plugin;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_describe(const CURecPlugin *plugin, CURecPluginInfo *info) {
    info->name = "recency";
    info->version = "0.1.0";
    info->kind = CUREC_PLUGIN_KIND_RECOMMENDER;
    info->item_feature_dim = info->user_feature_dim = info->reason_embedding_dim = 0;
    info->is_trained = plugin->last_seen != NULL;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_train(CURecPlugin *plugin, const CURecDatasetView *data,
                           const CURecTrainCallbacks *callbacks, CURecError *error) {
    (void)callbacks;
    float *last_seen = calloc(data->item_count, sizeof *last_seen);
    if (!last_seen) return fail(error, CUREC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    for (uint64_t n = 0; n < data->interaction_count; n++) {
        float t = (float)data->timestamps[n];
        if (t > last_seen[data->items[n]]) last_seen[data->items[n]] = t;
    }
    free(plugin->last_seen);
    plugin->last_seen = last_seen;
    plugin->item_count = data->item_count;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_score_recommender(const CURecPlugin *plugin, const CURecRecommendRequest *request,
                                       float *scores, CURecError *error) {
    if (!plugin->last_seen) return fail(error, CUREC_STATUS_FAILED_PRECONDITION, "recency is not trained");
    for (uint32_t n = 0; n < request->candidate_count; n++) {
        if (request->candidates[n] >= plugin->item_count) return fail(error, CUREC_STATUS_NOT_FOUND, "unknown item");
        scores[n] = plugin->last_seen[request->candidates[n]];
    }
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_save(const CURecPlugin *plugin, const char *directory, CURecError *error) {
    char path[4096];
    snprintf(path, sizeof path, "%s/recency.f32", directory);
    FILE *file = fopen(path, "wb");
    if (!file) return fail(error, CUREC_STATUS_INTERNAL, "cannot write recency.f32");
    fwrite(plugin->last_seen, sizeof(float), plugin->item_count, file);
    fclose(file);
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_load(CURecPlugin *plugin, const char *directory, CURecError *error) {
    (void)plugin; (void)directory;
    return fail(error, CUREC_STATUS_UNIMPLEMENTED, "recency retrains on start");
}

void curec_plugin_destroy(CURecPlugin *plugin) {
    if (plugin) free(plugin->last_seen);
    free(plugin);
}
