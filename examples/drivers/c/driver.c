/*
 * `c-file`: a single-node tsohost driver in C.
 *
 * The logic of tsohost's built-in `file` driver (guest-drivers/sdk/src/
 * register.rs in the tsohost repository), against `wit/driver.wit` (world
 * `consensus-driver`) through the bindings that `wit-bindgen c` generated
 * into bindings/.
 *
 * All durable state lives in host storage, as 8-byte big-endian u64 values:
 * - `high-water`: the durable high water; never decreases;
 * - `generation`: bumped (synced) by every `init`, so every instance leads
 *   under an epoch `{hi: generation, lo: 0}` strictly greater than the last.
 *
 * Guest memory holds only what `init` re-derives on every fresh instance
 * (the floor and the epoch) and the statistics, which count from the start
 * of the instance.
 *
 * Ownership follows the bindings: an export owns the lists and strings it
 * is passed and frees them; the lists and strings an export returns are
 * freed by the bindings after the host copied them, so they must come from
 * the heap; values an import returns are the caller's to free.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "consensus_driver.h"

#define NAME "c-file" /* storage namespace: 1-64 of [a-z0-9_-] */
#define VERSION "0.1.0"

#define HIGH_WATER "high-water"
#define GENERATION "generation"

#define MAX_PHYSICAL_MS ((UINT64_C(1) << 46) - 1) /* largest physical ms a timestamp carries */

typedef consensus_driver_string_t string;
typedef tsohost_driver_types_epoch_t epoch;
typedef tsohost_driver_types_driver_error_t driver_error;

/* Per-instance state, set by `init`. */
static bool initialized;
static epoch current_epoch;
static uint64_t hw_floor;

/* For `stats`: the synced writes of the high water this instance made. */
static uint64_t high_water_writes;

/*
 * The bindings were generated without their component-type object file
 * (build.sh embeds the type with `wasm-tools component embed` instead, so no
 * binary is committed), but they still reference the symbol it defines.
 */
void __component_type_object_force_link_consensus_driver(void) {}

static void append(string *s, const void *bytes, size_t n) {
    s->ptr = realloc(s->ptr, s->len + n);
    if (s->ptr == NULL) {
        abort();
    }
    memcpy(s->ptr + s->len, bytes, n);
    s->len += n;
}

static void append_u64(string *s, uint64_t value) {
    char digits[20];
    size_t start = sizeof digits;
    do {
        digits[--start] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    append(s, digits + start, sizeof digits - start);
}

/*
 * A heap string made from `fmt`, in which `%s` takes a C string, `%S` a
 * `string *` and `%u` a `uint64_t`: the messages below need no more.
 */
static string format(const char *fmt, ...) {
    string s = {NULL, 0};
    va_list args;
    va_start(args, fmt);
    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%') {
            const char *run = p;
            while (p[1] != '\0' && p[1] != '%') {
                p++;
            }
            append(&s, run, (size_t)(p - run) + 1);
            continue;
        }
        switch (*++p) {
        case 's': {
            const char *c = va_arg(args, const char *);
            append(&s, c, strlen(c));
            break;
        }
        case 'S': {
            const string *t = va_arg(args, const string *);
            append(&s, t->ptr, t->len);
            break;
        }
        case 'u':
            append_u64(&s, va_arg(args, uint64_t));
            break;
        }
    }
    va_end(args);
    return s;
}

static driver_error storage_error(string message) {
    driver_error e = {.tag = TSOHOST_DRIVER_TYPES_DRIVER_ERROR_STORAGE};
    e.val.storage = message;
    return e;
}

static driver_error invalid_config(string message) {
    driver_error e = {.tag = TSOHOST_DRIVER_TYPES_DRIVER_ERROR_INVALID_CONFIG};
    e.val.invalid_config = message;
    return e;
}

static driver_error internal_error(string message) {
    driver_error e = {.tag = TSOHOST_DRIVER_TYPES_DRIVER_ERROR_INTERNAL};
    e.val.internal = message;
    return e;
}

static consensus_driver_list_u8_t key_bytes(const char *key) {
    return (consensus_driver_list_u8_t){(uint8_t *)key, strlen(key)};
}

/* The u64 stored under `key` into `*value`, 0 if there is none. */
static bool get_u64(const char *key, uint64_t *value, driver_error *err) {
    consensus_driver_list_u8_t k = key_bytes(key);
    consensus_driver_list_u8_t raw;
    *value = 0;
    if (!tsohost_driver_host_storage_get(&k, &raw)) {
        return true;
    }
    bool ok = raw.len == 8;
    if (ok) {
        for (size_t i = 0; i < 8; i++) {
            *value = *value << 8 | raw.ptr[i];
        }
    } else {
        *err = storage_error(format("key '%s' holds %u bytes, expected an 8-byte u64: "
                                    "storage is corrupt",
                                    key, (uint64_t)raw.len));
    }
    consensus_driver_list_u8_free(&raw);
    return ok;
}

static bool put_u64_synced(const char *key, uint64_t value, driver_error *err) {
    uint8_t be[8];
    for (size_t i = 0; i < 8; i++) {
        be[i] = (uint8_t)(value >> (56 - 8 * i));
    }
    consensus_driver_tuple2_list_u8_list_u8_t put = {key_bytes(key), {be, sizeof be}};
    consensus_driver_list_tuple2_list_u8_list_u8_t puts = {&put, 1};
    consensus_driver_list_list_u8_t deletes = {NULL, 0};
    return tsohost_driver_host_storage_write(&puts, &deletes, true, err);
}

static int epoch_cmp(const epoch *a, const epoch *b) {
    if (a->hi != b->hi) {
        return a->hi < b->hi ? -1 : 1;
    }
    if (a->lo != b->lo) {
        return a->lo < b->lo ? -1 : 1;
    }
    return 0;
}

/* Requests can come before `init` only from a misbehaving host. */
static bool check_initialized(driver_error *err) {
    if (!initialized) {
        *err = internal_error(format("called before init"));
    }
    return initialized;
}

static bool load(uint64_t *hw, driver_error *err) {
    if (!get_u64(HIGH_WATER, hw, err)) {
        return false;
    }
    if (*hw < hw_floor) {
        *hw = hw_floor;
    }
    return true;
}

static bool persist(uint64_t at_least, const epoch *e, uint64_t *hw, driver_error *err) {
    if (at_least > MAX_PHYSICAL_MS) {
        *err = (driver_error){.tag = TSOHOST_DRIVER_TYPES_DRIVER_ERROR_OUT_OF_RANGE,
                              .val.out_of_range = at_least};
        return false;
    }
    int order = epoch_cmp(e, &current_epoch);
    if (order < 0) {
        *err = (driver_error){.tag = TSOHOST_DRIVER_TYPES_DRIVER_ERROR_FENCED,
                              .val.fenced = current_epoch};
        return false;
    }
    if (order > 0) {
        *err = internal_error(format("persist carries epoch %u.%u, newer than this driver's "
                                     "%u.%u: only this node issues epochs for its storage",
                                     e->hi, e->lo, current_epoch.hi, current_epoch.lo));
        return false;
    }
    if (!load(hw, err)) {
        return false;
    }
    if (at_least <= *hw) {
        return true;
    }
    if (!put_u64_synced(HIGH_WATER, at_least, err)) {
        return false;
    }
    high_water_writes++;
    *hw = at_least;
    return true;
}

/* Completes `request` with `value` or `*err`, which it frees. */
static void complete(uint64_t request, bool ok, uint64_t value, driver_error *err) {
    tsohost_driver_host_result_u64_driver_error_t outcome = {.is_err = !ok};
    if (ok) {
        outcome.val.ok = value;
    } else {
        outcome.val.err = *err;
    }
    tsohost_driver_host_completed(request, &outcome);
    if (!ok) {
        tsohost_driver_types_driver_error_free(err);
    }
}

static void refuse_cluster_operation(uint64_t request, const char *operation) {
    driver_error err = invalid_config(format("%s: this is a single-node driver; use a "
                                             "replicated driver (raft)",
                                             operation));
    complete(request, false, 0, &err);
}

/* `init` without the freeing of `cfg`. */
static bool start(const tsohost_driver_types_config_t *cfg, driver_error *err) {
    if (cfg->options.len > 0) {
        *err = invalid_config(format("unknown driver option `%S`; this driver knows none",
                                     &cfg->options.ptr[0].f0));
        return false;
    }
    for (size_t i = 0; i < cfg->peers.len; i++) {
        const tsohost_driver_types_peer_t *p = &cfg->peers.ptr[i];
        if (p->id != cfg->node_id) {
            *err = invalid_config(format("peers: this is a single-node driver, but node %u "
                                         "(%S) is configured; use a replicated driver "
                                         "(raft, paxos) for a cluster",
                                         p->id, &p->address));
            return false;
        }
    }
    uint64_t generation;
    if (!get_u64(GENERATION, &generation, err)) {
        return false;
    }
    if (generation == UINT64_MAX) {
        *err = internal_error(format("generation overflow"));
        return false;
    }
    generation++;
    if (!put_u64_synced(GENERATION, generation, err)) { /* durable before leading */
        return false;
    }
    hw_floor = cfg->floor;
    current_epoch = (epoch){.hi = generation, .lo = 0};
    initialized = true;
    tsohost_driver_types_leadership_t report = {
        .role = TSOHOST_DRIVER_TYPES_ROLE_LEADER,
        .leader = {.is_some = true, .val = cfg->node_id},
        .epoch = current_epoch,
        .lease_until_ms = UINT64_MAX,
    };
    tsohost_driver_host_report_leadership(&report);
    return true;
}

void exports_tsohost_driver_driver_info(exports_tsohost_driver_driver_driver_info_t *ret) {
    consensus_driver_string_dup(&ret->name, NAME);
    consensus_driver_string_dup(&ret->version, VERSION);
}

bool exports_tsohost_driver_driver_init(exports_tsohost_driver_driver_config_t *cfg,
                                        exports_tsohost_driver_driver_driver_error_t *err) {
    bool ok = start(cfg, err);
    exports_tsohost_driver_driver_config_free(cfg);
    return ok;
}

void exports_tsohost_driver_driver_on_message(exports_tsohost_driver_driver_node_id_t from,
                                              consensus_driver_list_u8_t *payload) {
    string line = format("ignored %u bytes from node %u: the " NAME " driver has no peers",
                         (uint64_t)payload->len, from);
    tsohost_driver_host_log(TSOHOST_DRIVER_TYPES_LOG_LEVEL_WARN, &line);
    consensus_driver_string_free(&line);
    consensus_driver_list_u8_free(payload);
}

uint64_t exports_tsohost_driver_driver_on_tick(uint64_t now_ms) {
    (void)now_ms;
    return UINT64_MAX;
}

void exports_tsohost_driver_driver_load_high_water(uint64_t request) {
    uint64_t hw = 0;
    driver_error err;
    bool ok = check_initialized(&err) && load(&hw, &err);
    complete(request, ok, hw, &err);
}

void exports_tsohost_driver_driver_persist_high_water(
    uint64_t request, uint64_t at_least, exports_tsohost_driver_driver_epoch_t *at_epoch) {
    uint64_t hw = 0;
    driver_error err;
    bool ok = check_initialized(&err) && persist(at_least, at_epoch, &hw, &err);
    complete(request, ok, hw, &err);
}

void exports_tsohost_driver_driver_change_membership(
    uint64_t request, exports_tsohost_driver_driver_list_peer_t *members) {
    exports_tsohost_driver_driver_list_peer_free(members);
    refuse_cluster_operation(request, "change-membership");
}

void exports_tsohost_driver_driver_transfer_leadership(
    uint64_t request, exports_tsohost_driver_driver_node_id_t *maybe_to) {
    (void)maybe_to;
    refuse_cluster_operation(request, "transfer-leadership");
}

/* From the heap: the bindings' post-return frees the list and its strings. */
void exports_tsohost_driver_driver_stats(exports_tsohost_driver_driver_list_metric_t *ret) {
    exports_tsohost_driver_driver_metric_t *writes = malloc(sizeof *writes);
    if (writes == NULL) {
        abort();
    }
    *writes = (exports_tsohost_driver_driver_metric_t){
        .value = {.tag = TSOHOST_DRIVER_TYPES_METRIC_VALUE_COUNTER,
                  .val.counter = high_water_writes},
        .labels = {NULL, 0},
    };
    consensus_driver_string_dup(&writes->name, "high_water_writes");
    consensus_driver_string_dup(&writes->help, "synced writes of the high water by this instance");
    *ret = (exports_tsohost_driver_driver_list_metric_t){writes, 1};
}
