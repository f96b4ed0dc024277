/*
 * A recommender that misbehaves on purpose, to prove that an isolated instance cannot take
 * the daemon down. Its config is one mode word:
 *
 *   ""             behaves: the score of a candidate is the candidate index
 *   "create-segv"  dereferences NULL in create
 *   "segv"         scoring user 666 dereferences NULL
 *   "hang"         scoring user 666 never returns
 *   "alloc"        scoring user 666 allocates and touches memory without bound
 *   "exit"         scoring user 666 calls exit(3)
 *   "garbage"      scoring user 666 writes bytes that are no frame on descriptors 3-10
 *   "train-segv"   training crashes at step 5 once (it leaves a mark in the checkpoint
 *                  directory), and resumes from its checkpoint the next time
 *   "train-until-cancelled"  training reports progress until it is cancelled
 *
 * A request for 13 candidates misbehaves like user 666 (clients over the wire do not know
 * the daemon's user indices). Every other request scores normally in every mode. Training counts steps 1-10 and writes the
 * last finished step to <checkpoint directory>/step; save writes "trained" to <dir>/state.
 */
#include "misbehaving.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MISBEHAVING_USER 666u
#define MISBEHAVING_CANDIDATE_COUNT 13u

struct CURecPlugin {
    char mode[32];
    int trained;
    /* The step training resumed from (0: from the start), for the tests. */
    int resumed_from;
};

static void fail(CURecError *error, int32_t code, const char *message) {
    if (!error) return;
    error->code = code;
    snprintf(error->message, sizeof error->message, "%s", message);
}

static int is_mode(const CURecPlugin *plugin, const char *mode) { return strcmp(plugin->mode, mode) == 0; }

static void crash(void) {
    volatile int *nowhere = NULL;
    *nowhere = 1;
}

uint32_t curec_plugin_abi_version(void) { return CUREC_PLUGIN_ABI_VERSION; }

int32_t curec_plugin_create(const uint8_t *config, size_t size, CURecPlugin **out, CURecError *error) {
    if (size >= sizeof((CURecPlugin *)0)->mode) {
        fail(error, CUREC_STATUS_INVALID_ARGUMENT, "unknown mode");
        return CUREC_STATUS_INVALID_ARGUMENT;
    }
    CURecPlugin *plugin = calloc(1, sizeof *plugin);
    if (!plugin) {
        fail(error, CUREC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return CUREC_STATUS_RESOURCE_EXHAUSTED;
    }
    if (size > 0) memcpy(plugin->mode, config, size);
    if (is_mode(plugin, "create-segv")) crash();
    *out = plugin;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_describe(const CURecPlugin *plugin, CURecPluginInfo *info) {
    if (info->struct_size < sizeof *info) return CUREC_STATUS_INVALID_ARGUMENT;
    info->name = "misbehaving";
    info->version = plugin->resumed_from > 0 ? "1.0.0-resumed" : "1.0.0";
    info->kind = CUREC_PLUGIN_KIND_RECOMMENDER;
    info->item_feature_dim = 0;
    info->user_feature_dim = 0;
    info->reason_embedding_dim = 0;
    info->is_trained = plugin->trained;
    return CUREC_STATUS_OK;
}

static void misbehave(const CURecPlugin *plugin) {
    if (is_mode(plugin, "segv")) crash();
    if (is_mode(plugin, "hang")) {
        for (volatile unsigned long spin = 0;; spin++) {}
    }
    if (is_mode(plugin, "alloc")) {
        for (;;) {
            char *block = malloc(64u << 20);
            /* Unchecked, as in the plugin this stands for: NULL past the limit crashes. */
            memset(block, 1, 64u << 20);
        }
    }
    if (is_mode(plugin, "exit")) exit(3);
    if (is_mode(plugin, "garbage")) {
        static const unsigned char junk[] = {0xff, 0xff, 0xff, 0x7f, 0x99, 1, 2, 3, 4, 5, 6, 7};
        for (int descriptor = 3; descriptor <= 10; descriptor++) {
            ssize_t ignored = write(descriptor, junk, sizeof junk);
            (void)ignored;
        }
    }
}

int32_t curec_plugin_score_recommender(const CURecPlugin *plugin, const CURecRecommendRequest *request,
                                       float *scores, CURecError *error) {
    (void)error;
    if (request->user == MISBEHAVING_USER || request->candidate_count == MISBEHAVING_CANDIDATE_COUNT) misbehave(plugin);
    for (uint32_t index = 0; index < request->candidate_count; index++) scores[index] = (float)request->candidates[index];
    return CUREC_STATUS_OK;
}

static int read_step(const char *directory) {
    char path[4096];
    snprintf(path, sizeof path, "%s/step", directory);
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    int step = 0;
    if (fscanf(file, "%d", &step) != 1) step = 0;
    fclose(file);
    return step;
}

static void write_file(const char *directory, const char *name, const char *text) {
    char path[4096], temporary[4200];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *file = fopen(temporary, "w");
    if (!file) return;
    fputs(text, file);
    fclose(file);
    rename(temporary, path);
}

static int has_file(const char *directory, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    return access(path, F_OK) == 0;
}

int32_t curec_plugin_train(CURecPlugin *plugin, const CURecDatasetView *dataset,
                           const CURecTrainCallbacks *callbacks, CURecError *error) {
    (void)dataset;
    const char *checkpoints = NULL;
    if (callbacks && callbacks->struct_size >= sizeof *callbacks) checkpoints = callbacks->checkpoint_directory;
    int first = checkpoints ? read_step(checkpoints) + 1 : 1;
    plugin->resumed_from = first > 1 ? first - 1 : 0;
    for (int step = first;; step++) {
        if (callbacks && callbacks->is_cancelled && callbacks->is_cancelled(callbacks->context)) {
            fail(error, CUREC_STATUS_CANCELLED, "training cancelled");
            return CUREC_STATUS_CANCELLED;
        }
        if (is_mode(plugin, "train-until-cancelled")) {
            if (callbacks && callbacks->progress) callbacks->progress(callbacks->context, (uint64_t)step, 0, "{}");
            usleep(1000);
            continue;
        }
        if (step > 10) break;
        if (is_mode(plugin, "train-segv") && step == 5 && checkpoints && !has_file(checkpoints, "crashed")) {
            write_file(checkpoints, "crashed", "1");
            crash();
        }
        if (callbacks && callbacks->progress) callbacks->progress(callbacks->context, (uint64_t)step, 10, "{\"loss\":1}");
        if (checkpoints) {
            char text[32];
            snprintf(text, sizeof text, "%d", step);
            write_file(checkpoints, "step", text);
        }
    }
    plugin->trained = 1;
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_save(const CURecPlugin *plugin, const char *directory, CURecError *error) {
    if (!plugin->trained) {
        fail(error, CUREC_STATUS_FAILED_PRECONDITION, "not trained");
        return CUREC_STATUS_FAILED_PRECONDITION;
    }
    write_file(directory, "state", "trained");
    return CUREC_STATUS_OK;
}

int32_t curec_plugin_load(CURecPlugin *plugin, const char *directory, CURecError *error) {
    if (!has_file(directory, "state")) {
        fail(error, CUREC_STATUS_NOT_FOUND, "no saved state");
        return CUREC_STATUS_NOT_FOUND;
    }
    plugin->trained = 1;
    return CUREC_STATUS_OK;
}

void curec_plugin_destroy(CURecPlugin *plugin) { free(plugin); }
