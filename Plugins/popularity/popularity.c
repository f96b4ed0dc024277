/*
 * The popularity recommender: a CURec plugin written in C.
 *
 * score(u, i) = sum over training interactions (v, i) of
 *     (rating_weight * rating + (1 - rating_weight)) * 2^(-(t_max - t) / half_life)
 * the same for every user (history is ignored). Its configuration is a serialized
 * curec.plugins.popularity.PopularityConfig message (popularity_config.proto), parsed with
 * protobuf-c; an empty config means the defaults (no decay, plain counts).
 *
 * Threading: scoring only reads `scores`, which train/load replace while the host
 * guarantees no concurrent calls (see curec_plugin.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curec_plugin.h"
#include "popularity_config.pb-c.h"

struct CURecPlugin {
    double half_life_days;
    double rating_weight;
    char version[64];
    uint32_t item_count;
    float *scores; /* item_count entries, NULL until trained */
};

static int32_t fail(CURecError *error, int32_t code, const char *format, const char *detail) {
    if (error != NULL) {
        error->code = code;
        snprintf(error->message, sizeof error->message, format, detail);
    }
    return code;
}

uint32_t curec_plugin_abi_version(void) { return CUREC_PLUGIN_ABI_VERSION; }

int32_t curec_plugin_create(const uint8_t *config, size_t config_size, CURecPlugin **out, CURecError *error) {
    if (out == NULL) return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "out is NULL");
    Curec__Plugins__Popularity__PopularityConfig *parsed =
        curec__plugins__popularity__popularity_config__unpack(NULL, config_size, config_size ? config : (const uint8_t *)"");
    if (parsed == NULL) {
        return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s",
                    "popularity config is not a serialized curec.plugins.popularity.PopularityConfig message");
    }
    if (parsed->half_life_days < 0 || parsed->rating_weight < 0 || parsed->rating_weight > 1 ||
        isnan(parsed->half_life_days) || isnan(parsed->rating_weight)) {
        curec__plugins__popularity__popularity_config__free_unpacked(parsed, NULL);
        return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s",
                    "popularity config: half_life_days must be >= 0 and rating_weight within [0, 1]");
    }
    CURecPlugin *plugin = calloc(1, sizeof *plugin);
    if (plugin == NULL) {
        curec__plugins__popularity__popularity_config__free_unpacked(parsed, NULL);
        return fail(error, CUREC_STATUS_RESOURCE_EXHAUSTED, "%s", "out of memory");
    }
    plugin->half_life_days = parsed->half_life_days;
    plugin->rating_weight = parsed->rating_weight;
    snprintf(plugin->version, sizeof plugin->version, "%s",
             parsed->version_label && parsed->version_label[0] ? parsed->version_label : "1.0.0");
    curec__plugins__popularity__popularity_config__free_unpacked(parsed, NULL);
    *out = plugin;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_describe(const CURecPlugin *plugin, CURecPluginInfo *info) {
    if (plugin == NULL || info == NULL || info->struct_size < sizeof(CURecPluginInfo)) return CUREC_STATUS_INVALID_ARGUMENT;
    info->name = "popularity";
    info->version = plugin->version;
    info->kind = CUREC_PLUGIN_KIND_RECOMMENDER;
    info->item_feature_dim = 0;
    info->user_feature_dim = 0;
    info->reason_embedding_dim = 0;
    info->is_trained = plugin->scores != NULL;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_train(CURecPlugin *plugin, const CURecDatasetView *dataset,
                           const CURecTrainCallbacks *callbacks, CURecError *error) {
    if (plugin == NULL || dataset == NULL) return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "plugin or dataset is NULL");
    if (dataset->item_count == 0) return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "the dataset has no items");
    float *scores = calloc(dataset->item_count, sizeof *scores);
    if (scores == NULL) return fail(error, CUREC_STATUS_RESOURCE_EXHAUSTED, "%s", "out of memory");
    int64_t newest = INT64_MIN;
    for (uint64_t n = 0; n < dataset->interaction_count; n++) {
        if (dataset->timestamps[n] > newest) newest = dataset->timestamps[n];
    }
    for (uint64_t n = 0; n < dataset->interaction_count; n++) {
        uint32_t item = dataset->items[n];
        if (item >= dataset->item_count) {
            free(scores);
            return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "an interaction names an item outside the dataset");
        }
        double weight = plugin->rating_weight * dataset->ratings[n] + (1.0 - plugin->rating_weight);
        if (plugin->half_life_days > 0) {
            double age_days = (double)(newest - dataset->timestamps[n]) / 86400.0;
            weight *= exp2(-age_days / plugin->half_life_days);
        }
        scores[item] += (float)weight;
        if (callbacks != NULL && (n % 20000) == 0) {
            if (callbacks->is_cancelled != NULL && callbacks->is_cancelled(callbacks->context)) {
                free(scores);
                return fail(error, CUREC_STATUS_CANCELLED, "%s", "popularity training was cancelled");
            }
            if (callbacks->progress != NULL) callbacks->progress(callbacks->context, n, dataset->interaction_count, "{}");
        }
    }
    free(plugin->scores);
    plugin->scores = scores;
    plugin->item_count = dataset->item_count;
    if (callbacks != NULL && callbacks->progress != NULL) {
        callbacks->progress(callbacks->context, dataset->interaction_count, dataset->interaction_count, "{}");
    }
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_score_recommender(const CURecPlugin *plugin, const CURecRecommendRequest *request,
                                       float *scores, CURecError *error) {
    if (plugin == NULL || request == NULL || scores == NULL) {
        return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "plugin, request or scores is NULL");
    }
    if (plugin->scores == NULL) return fail(error, CUREC_STATUS_FAILED_PRECONDITION, "%s", "popularity is not trained yet");
    for (uint32_t n = 0; n < request->candidate_count; n++) {
        uint32_t item = request->candidates[n];
        if (item >= plugin->item_count) {
            return fail(error, CUREC_STATUS_NOT_FOUND, "%s", "a candidate item index is not in the trained model");
        }
        scores[n] = plugin->scores[item];
    }
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_save(const CURecPlugin *plugin, const char *directory, CURecError *error) {
    if (plugin == NULL || directory == NULL) return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "plugin or directory is NULL");
    if (plugin->scores == NULL) return fail(error, CUREC_STATUS_FAILED_PRECONDITION, "%s", "popularity is not trained; nothing to save");
    char path[4096];
    snprintf(path, sizeof path, "%s/popularity.f32", directory);
    FILE *file = fopen(path, "wb");
    if (file == NULL) return fail(error, CUREC_STATUS_INTERNAL, "cannot write %s", path);
    size_t written = fwrite(plugin->scores, sizeof(float), plugin->item_count, file);
    int closed = fclose(file);
    if (written != plugin->item_count || closed != 0) return fail(error, CUREC_STATUS_INTERNAL, "short write to %s", path);
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_load(CURecPlugin *plugin, const char *directory, CURecError *error) {
    if (plugin == NULL || directory == NULL) return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s", "plugin or directory is NULL");
    char path[4096];
    snprintf(path, sizeof path, "%s/popularity.f32", directory);
    FILE *file = fopen(path, "rb");
    if (file == NULL) return fail(error, CUREC_STATUS_NOT_FOUND, "%s is missing: not a popularity artifact", path);
    if (fseek(file, 0, SEEK_END) != 0) { fclose(file); return fail(error, CUREC_STATUS_INTERNAL, "cannot read %s", path); }
    long size = ftell(file);
    rewind(file);
    if (size <= 0 || size % (long)sizeof(float) != 0) {
        fclose(file);
        return fail(error, CUREC_STATUS_INVALID_ARGUMENT, "%s has a size that is not a whole number of floats", path);
    }
    uint32_t count = (uint32_t)(size / (long)sizeof(float));
    float *scores = malloc((size_t)size);
    if (scores == NULL) { fclose(file); return fail(error, CUREC_STATUS_RESOURCE_EXHAUSTED, "%s", "out of memory"); }
    size_t read = fread(scores, sizeof(float), count, file);
    fclose(file);
    if (read != count) { free(scores); return fail(error, CUREC_STATUS_INTERNAL, "short read from %s", path); }
    free(plugin->scores);
    plugin->scores = scores;
    plugin->item_count = count;
    return CUREC_STATUS_OK;
}

void curec_plugin_destroy(CURecPlugin *plugin) {
    if (plugin == NULL) return;
    free(plugin->scores);
    free(plugin);
}
