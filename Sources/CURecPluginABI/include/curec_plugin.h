/*
 * curec_plugin.h: the C ABI between the CURec serve daemon and its plugins.
 *
 * A plugin is a shared library that exports the functions declared at the end of this
 * header. The daemon (the "host") loads it with dlopen, checks the ABI version, looks up
 * every required symbol, and then drives it:
 *
 *     curec_plugin_abi_version()             -> compatible?
 *     curec_plugin_create(config)            -> instance
 *     curec_plugin_describe(instance)        -> name, version, kind, dimensions
 *     curec_plugin_train(instance, dataset)  -> (optional, before serving)
 *     curec_plugin_load / _save(directory)   -> artifacts
 *     curec_plugin_score_*(instance, ...)    -> many times, from many threads
 *     curec_plugin_score_recommender_batch    -> (optional, 1.2) many requests in one call
 *     curec_plugin_destroy(instance)
 *
 * VERSIONING
 *   The ABI version is MAJOR.MINOR. The host refuses a plugin whose major differs from its
 *   own, or whose minor is greater than its own (the plugin needs functions the host lacks).
 *   Minor versions only add: new functions (looked up optionally) and new trailing struct
 *   fields, which is why every input struct starts with `struct_size`: a host or plugin
 *   reads only the fields that fit in the size the other side declared.
 *   1.0: the first version. 1.1: CURecTrainCallbacks.checkpoint_directory (resumable
 *   training). 1.2: CURecPluginInfo.max_batch_size and the optional batched entry point
 *   curec_plugin_score_recommender_batch (dynamic batching; see BATCHING).
 *
 * ERRORS
 *   Functions that can fail return a CUREC_STATUS_* code (0 = success) and, on failure, fill
 *   the caller-provided CURecError with the same code and a NUL-terminated message a person
 *   can act on. The codes are the gRPC status codes, so the host passes them to clients
 *   unchanged (e.g. FAILED_PRECONDITION when scoring an untrained model, NOT_FOUND for an
 *   unknown user or item id).
 *
 * OWNERSHIP
 *   Memory is never freed across the boundary. Inputs are owned by the caller and valid only
 *   for the duration of the call; a plugin that needs them later copies them. Outputs are
 *   written into caller-owned buffers whose sizes are stated per function. Strings a plugin
 *   returns through CURecPluginInfo are owned by the instance and stay valid until
 *   curec_plugin_destroy.
 *
 * THREADING
 *   curec_plugin_score_recommender and curec_plugin_score_reward must be safe to call
 *   concurrently from any number of threads on one instance. The host never calls
 *   curec_plugin_train, curec_plugin_load or curec_plugin_destroy on an instance while any
 *   other call on that instance is running, and never calls curec_plugin_save concurrently
 *   with train or load. Different instances are independent. Callbacks passed to
 *   curec_plugin_train are called on the thread that called curec_plugin_train.
 *
 * UNLOADING
 *   The host loads each library from a private copy of its file, so a rebuilt library can be
 *   loaded beside the running one. After curec_plugin_destroy of a retired instance the host
 *   drops its handle but the code stays mapped (RTLD_NODELETE): plugins need not make their
 *   code safe to unmap, and must not rely on library destructors running at unload.
 *
 * BATCHING (1.2)
 *   A recommender may export curec_plugin_score_recommender_batch and describe a non-zero
 *   max_batch_size. The host then may queue concurrent scoring requests of many users for a
 *   short while and hand them to the plugin in one call, which should compute them together
 *   (one forward pass over the batch) and report an outcome per request: one request's
 *   failure (an unknown user, say) never fails the others. The host uses the batched entry
 *   point only when both are present; a plugin of an older minor version, or one describing
 *   max_batch_size 0, is called one request at a time through curec_plugin_score_recommender,
 *   which every recommender keeps exporting. Batched and single calls of the same request
 *   must give the same scores (up to float rounding of a different summation order).
 *
 * IDS
 *   Users and items are dense 0-based indices (uint32), assigned by the host from the
 *   dataset; they are stable for one dataset and saved artifacts are only valid for it.
 */
#ifndef CUREC_PLUGIN_H
#define CUREC_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version this header describes. */
#define CUREC_PLUGIN_ABI_VERSION_MAJOR 1
#define CUREC_PLUGIN_ABI_VERSION_MINOR 2
/** MAJOR and MINOR packed as returned by curec_plugin_abi_version(). */
#define CUREC_PLUGIN_ABI_VERSION \
    ((uint32_t)((CUREC_PLUGIN_ABI_VERSION_MAJOR << 16) | CUREC_PLUGIN_ABI_VERSION_MINOR))

/** Status codes; equal to the gRPC status codes of the same names. */
typedef enum CURecStatus {
    CUREC_STATUS_OK = 0,
    CUREC_STATUS_CANCELLED = 1,
    CUREC_STATUS_INVALID_ARGUMENT = 3,
    CUREC_STATUS_NOT_FOUND = 5,
    CUREC_STATUS_RESOURCE_EXHAUSTED = 8,
    CUREC_STATUS_FAILED_PRECONDITION = 9,
    CUREC_STATUS_UNIMPLEMENTED = 12,
    CUREC_STATUS_INTERNAL = 13
} CURecStatus;

/** What a plugin instance does. */
typedef enum CURecPluginKind {
    /** Scores candidate items for a user (curec_plugin_score_recommender). */
    CUREC_PLUGIN_KIND_RECOMMENDER = 1,
    /** Scores (user, item, reason embedding) triples (curec_plugin_score_reward). */
    CUREC_PLUGIN_KIND_REWARD_MODEL = 2
} CURecPluginKind;

/** Size of CURecError.message, including the terminating NUL. */
#define CUREC_ERROR_MESSAGE_CAPACITY 512

/**
 * An error report. Owned by the caller (usually on its stack); the plugin fills it only
 * when returning a non-zero status: `code` equal to the return value, `message`
 * NUL-terminated and truncated to fit.
 */
typedef struct CURecError {
    int32_t code;
    char message[CUREC_ERROR_MESSAGE_CAPACITY];
} CURecError;

/** An opaque plugin instance, created by curec_plugin_create. */
typedef struct CURecPlugin CURecPlugin;

/**
 * Static facts about an instance, filled by curec_plugin_describe. The host sets
 * `struct_size` before the call; the plugin fills what fits. Strings are owned by the
 * instance and valid until curec_plugin_destroy.
 */
typedef struct CURecPluginInfo {
    uint32_t struct_size;
    /** Short identifier, e.g. "bpr". */
    const char *name;
    /** The plugin's own version, e.g. "1.2.0". */
    const char *version;
    /** CURecPluginKind. */
    int32_t kind;
    /** Dimension of the per-item feature vectors it uses from the dataset, 0 if none. */
    uint32_t item_feature_dim;
    /** Dimension of the per-user feature vectors it uses from the dataset, 0 if none. */
    uint32_t user_feature_dim;
    /** Reward models: dimension of reason embeddings it scores; 0 for recommenders. */
    uint32_t reason_embedding_dim;
    /** Non-zero once the instance can score (trained or loaded). */
    int32_t is_trained;
    /**
     * Since 1.2 (write it only when struct_size covers it). Recommenders exporting
     * curec_plugin_score_recommender_batch: the most requests one batched call accepts;
     * 0 (the default) means the instance is not batched.
     */
    uint32_t max_batch_size;
} CURecPluginInfo;

/**
 * Training data, owned by the host and valid only during curec_plugin_train.
 * Interaction arrays all have `interaction_count` elements and are sorted by user, then
 * by timestamp. Feature matrices are row-major and may be NULL (dimension 0).
 */
typedef struct CURecDatasetView {
    uint32_t struct_size;
    uint32_t user_count;
    uint32_t item_count;
    uint64_t interaction_count;
    const uint32_t *users;
    const uint32_t *items;
    const float *ratings;
    const int64_t *timestamps;
    /** [item_count x item_feature_dim] or NULL. */
    const float *item_features;
    uint32_t item_feature_dim;
    /** [user_count x user_feature_dim] or NULL. */
    const float *user_features;
    uint32_t user_feature_dim;
    /** Validation interactions (at most one per user), for early stopping; may be empty. */
    uint64_t validation_count;
    const uint32_t *validation_users;
    const uint32_t *validation_items;
} CURecDatasetView;

/**
 * Progress and cancellation hooks for curec_plugin_train, owned by the host. Both
 * functions may be NULL. They are called on the training thread.
 */
typedef struct CURecTrainCallbacks {
    uint32_t struct_size;
    /** Passed back unchanged to the functions below. */
    void *context;
    /**
     * Reports progress: `step` of `total` (total 0 if unknown) and a NUL-terminated JSON
     * object of metrics (e.g. {"loss":0.31}), valid only during the call.
     */
    void (*progress)(void *context, uint64_t step, uint64_t total, const char *metrics_json);
    /** Returns non-zero when training should stop; the plugin then returns CANCELLED. */
    int32_t (*is_cancelled)(void *context);
    /**
     * Since 1.1 (read it only when struct_size covers it). A NUL-terminated directory that
     * survives daemon restarts, or NULL. A plugin that supports resuming writes checkpoints
     * of its training state there now and then (replacing files atomically), and when a
     * train call finds a checkpoint made for the same dataset and config, continues from it
     * instead of starting over. Owned by the host, valid during the call.
     */
    const char *checkpoint_directory;
} CURecTrainCallbacks;

/** One recommender scoring request, owned by the caller, valid during the call. */
typedef struct CURecRecommendRequest {
    uint32_t struct_size;
    uint32_t user;
    /** The user's history, oldest first (may be empty). */
    const uint32_t *history;
    uint32_t history_count;
    /** Items to score. */
    const uint32_t *candidates;
    uint32_t candidate_count;
} CURecRecommendRequest;

/** One reward-model input: a reason about (user, item), as an embedding. */
typedef struct CURecRewardTriple {
    uint32_t user;
    uint32_t item;
    /** `dim` floats, owned by the caller. */
    const float *reason_embedding;
    uint32_t dim;
} CURecRewardTriple;

/* ------------------------------------------------------------------------------------
 * Exported functions. Every one is required, except the score function of the kind the
 * plugin is not (a recommender need not export curec_plugin_score_reward and vice versa).
 * ---------------------------------------------------------------------------------- */

/**
 * Returns CUREC_PLUGIN_ABI_VERSION as the plugin was built. Called first, before any other
 * function; must not allocate or fail. Thread-safe.
 */
uint32_t curec_plugin_abi_version(void);

/**
 * Creates an instance from `config` (`config_size` bytes, format defined by the plugin, e.g.
 * JSON or a serialized protobuf message; may be empty for defaults). `config` is owned by
 * the caller. On success stores the new instance in `*out` (owned by the caller, released
 * with curec_plugin_destroy) and returns 0. On failure returns a status, fills `error`, and
 * leaves `*out` unchanged. Thread-safe.
 */
int32_t curec_plugin_create(const uint8_t *config, size_t config_size, CURecPlugin **out, CURecError *error);

/**
 * Fills `info` (whose struct_size the caller set) with the instance's facts. Never fails
 * for a valid instance; returns 0. May run concurrently with scoring.
 */
int32_t curec_plugin_describe(const CURecPlugin *plugin, CURecPluginInfo *info);

/**
 * Trains the instance on `dataset`, replacing any earlier state. `callbacks` may be NULL.
 * Both pointers are owned by the caller and valid only during the call. Returns 0, or
 * CUREC_STATUS_CANCELLED when is_cancelled asked it to stop (the instance is then untrained
 * or keeps its earlier state), or another status with `error` filled. Exclusive: no other
 * call on this instance runs meanwhile.
 */
int32_t curec_plugin_train(CURecPlugin *plugin, const CURecDatasetView *dataset,
                           const CURecTrainCallbacks *callbacks, CURecError *error);

/**
 * Recommenders: writes one score per candidate into `scores` (caller-owned, at least
 * request->candidate_count floats); higher means more relevant. Returns
 * FAILED_PRECONDITION if untrained, NOT_FOUND for an unknown user or item index.
 * Thread-safe: called concurrently on one instance.
 */
int32_t curec_plugin_score_recommender(const CURecPlugin *plugin, const CURecRecommendRequest *request,
                                       float *scores, CURecError *error);

/**
 * Since 1.2, optional (looked up only in plugins of minor version 2 or later). Recommenders:
 * scores `count` requests in one call, `count` between 1 and the max_batch_size the instance
 * describes. `requests[i]` is scored into `scores[i]` (caller-owned, at least
 * requests[i].candidate_count floats each; the buffers do not overlap). The plugin writes
 * `results[i].code` for every request: 0 when its scores were written, else a status with
 * `results[i].message` filled (NUL-terminated), exactly as curec_plugin_score_recommender
 * would fail for that request alone; the other requests are unaffected. Returns 0 when every
 * request has its outcome in `results`, or a status with `error` filled when the batch as a
 * whole could not run (then every request fails with it). All arrays are owned by the caller
 * and valid during the call. Thread-safe like curec_plugin_score_recommender.
 */
int32_t curec_plugin_score_recommender_batch(const CURecPlugin *plugin, const CURecRecommendRequest *requests,
                                             size_t count, float *const *scores, CURecError *results,
                                             CURecError *error);

/**
 * Reward models: writes one reward per triple into `rewards` (caller-owned, at least
 * `count` floats); higher means the reason agrees better with the collaborative data.
 * Returns INVALID_ARGUMENT when a triple's dim is not the instance's
 * reason_embedding_dim, FAILED_PRECONDITION if untrained, NOT_FOUND for an unknown index.
 * Thread-safe: called concurrently on one instance.
 */
int32_t curec_plugin_score_reward(const CURecPlugin *plugin, const CURecRewardTriple *triples, size_t count,
                                  float *rewards, CURecError *error);

/**
 * Writes the trained state into the existing directory `directory` (a NUL-terminated
 * path owned by the caller). Returns FAILED_PRECONDITION if untrained. Must not run
 * concurrently with train or load; may run concurrently with scoring.
 */
int32_t curec_plugin_save(const CURecPlugin *plugin, const char *directory, CURecError *error);

/**
 * Replaces the instance's state with one saved by curec_plugin_save in `directory`.
 * On failure the instance keeps its earlier state. Exclusive.
 */
int32_t curec_plugin_load(CURecPlugin *plugin, const char *directory, CURecError *error);

/** Releases the instance and everything it owns. Exclusive; `plugin` may be NULL. */
void curec_plugin_destroy(CURecPlugin *plugin);

#ifdef __cplusplus
}
#endif

#endif /* CUREC_PLUGIN_H */
