/* kvtier.h: the stable C ABI of kvtier (libkvtier.so), for servers written
 * in C, Python (ctypes, see src/bindings/python), Rust (see
 * src/bindings/rust) or anything else with a C FFI. It wraps the C++ API of
 * kvtier/cache.h; the contracts stated there (exact hits, prefix-only
 * serving, pinned blocks never evicted, Close/Flush durability) hold here.
 *
 * Error model. Every call that can fail returns a kvtier_code (KVTIER_OK = 0)
 * and takes a last argument `kvtier_error** err`. `err` may be NULL (only
 * the code is reported). Otherwise, on failure *err receives a new error
 * object that the CALLER OWNS and frees with kvtier_error_free(); a
 * non-NULL *err on entry is freed first; on success *err is left as is.
 * The message names the cause ("payload 1 is 4096 bytes, layout needs
 * 8192"). No C++ exception ever crosses this boundary: an unexpected one
 * becomes KVTIER_INTERNAL with its what() as the message.
 *
 * Handles and lifetimes.
 *  - kvtier_cache: created by kvtier_open(), owned by the caller, destroyed
 *    by kvtier_close() (which always frees it, even when it reports an
 *    error). Thread-safe: any number of threads may call into one cache.
 *  - kvtier_lease: created by kvtier_lookup(), owned by the caller,
 *    destroyed by kvtier_lease_release(), which unpins its blocks. It stays
 *    valid after its cache is closed. One thread at a time per lease.
 *    A block pointer from kvtier_lease_block() is valid until the lease is
 *    released; the bytes are read-only.
 *    Using a released lease is undefined behaviour in Release builds; in
 *    checked builds (every build type but Release/MinSizeRel, see
 *    kvtier_lease_checks_enabled()) it is detected and reported as
 *    KVTIER_INVALID_ARGUMENT "lease was already released".
 *  - kvtier_error: owned by the caller, freed by kvtier_error_free().
 *  - Strings and arrays passed in are only read during the call.
 *
 * Forward compatibility: kvtier_options and kvtier_stats start with
 * `struct_size`, set by kvtier_options_init()/the caller to the size the
 * caller was compiled with. The library reads (writes) only that many
 * bytes, so an older caller keeps working with a newer library; fields the
 * caller does not know take their defaults. A newer, larger struct is
 * accepted by an older library only if the unknown tail is all zero bytes.
 * Fields are only ever appended. */
#ifndef KVTIER_KVTIER_H_
#define KVTIER_KVTIER_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KVTIER_EXPORT __attribute__((visibility("default")))
#else
#define KVTIER_EXPORT
#endif

/* Bumped only for incompatible changes (none so far). */
#define KVTIER_ABI_VERSION 1

typedef enum kvtier_code {
  KVTIER_OK = 0,
  KVTIER_NOT_FOUND = 1,
  KVTIER_CORRUPTION = 2,
  KVTIER_INVALID_ARGUMENT = 3, /* NULL handle, wrong size, bad option, ... */
  KVTIER_IO_ERROR = 4,
  KVTIER_BUSY = 5,          /* store held by another process */
  KVTIER_FULL = 6,          /* every resident block is pinned */
  KVTIER_NOT_SUPPORTED = 7, /* other store format, unknown option bytes */
  KVTIER_UNAVAILABLE = 8,   /* kvtierd down or timed out */
  KVTIER_INTERNAL = 9       /* an unexpected C++ exception (e.g. bad_alloc) */
} kvtier_code;

typedef enum kvtier_dtype {
  KVTIER_F32 = 1,
  KVTIER_F16 = 2,
  KVTIER_BF16 = 3,
  KVTIER_INT8 = 4,
  KVTIER_FP8E4M3 = 5,
  KVTIER_FP8E5M2 = 6
} kvtier_dtype;

typedef enum kvtier_spill_policy {
  KVTIER_SPILL_ON_EVICT = 0,
  KVTIER_WRITE_THROUGH = 1,
  KVTIER_SPILL_AUTO = 2
} kvtier_spill_policy;

typedef struct kvtier_cache kvtier_cache;
typedef struct kvtier_lease kvtier_lease;
typedef struct kvtier_error kvtier_error;

/* Options of kvtier_open(). Always start from kvtier_options_init().
 * Strings may be NULL (= ""). See CacheOptions/Namespace/StoreOptions in
 * the C++ headers for the meaning of each field. */
typedef struct kvtier_options {
  uint32_t struct_size; /* sizeof(kvtier_options) of the caller */
  /* Namespace: REQUIRED model and layout. */
  uint32_t num_layers;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t block_size; /* tokens per block; default 16 */
  uint32_t dtype;      /* kvtier_dtype; default KVTIER_F16 */
  const char* model;   /* REQUIRED, non-empty */
  const char* revision;
  const char* tokenizer;
  const char* salt;
  uint32_t tp_rank; /* default 0 */
  uint32_t tp_size; /* default 1 */
  /* Cache. */
  uint64_t memory_bytes; /* default 1 GiB */
  const char* store;     /* NULL/"" memory-only, a directory, or "unix:PATH" */
  uint32_t spill_policy; /* kvtier_spill_policy; default KVTIER_SPILL_AUTO */
  uint32_t spill_threads; /* default 1 */
  /* Store (unused when memory-only). */
  uint64_t store_max_bytes; /* default 16 GiB; 0 = no limit */
  uint32_t store_sync_writes; /* 0/1, default 0 */
  uint32_t store_read_only;   /* 0/1, default 0 */
} kvtier_options;

/* Counters of kvtier_stats(); see CacheStats in kvtier/cache.h. */
typedef struct kvtier_stats {
  uint32_t struct_size; /* set by the caller: sizeof(kvtier_stats) */
  uint32_t reserved;
  uint64_t lookups, lookup_blocks, memory_hits, disk_hits, misses, lookups_with_hit;
  uint64_t inserts, insert_duplicates, insert_rejected;
  uint64_t evictions, spills, promotions;
  uint64_t bytes_written_raw, bytes_written_stored, bytes_read_raw, bytes_read_stored;
  uint64_t corrupt_records, store_errors, spill_retries, spill_dropped;
  uint64_t queue_blocks, queue_bytes;
  uint64_t resident_blocks, pinned_blocks, memory_bytes, memory_budget;
  uint64_t memory_overhead_bytes;
  uint64_t disk_records, disk_bytes, disk_budget;
} kvtier_stats;

/* One block payload: `size` bytes at `data`. */
typedef struct kvtier_block {
  const void* data;
  size_t size;
} kvtier_block;

/* ---- Library ---------------------------------------------------------- */

/* KVTIER_ABI_VERSION of the loaded library. */
KVTIER_EXPORT int kvtier_abi_version(void);
/* 1 if this library detects use of a released lease (checked build). */
KVTIER_EXPORT int kvtier_lease_checks_enabled(void);
/* "OK", "NotFound", ..., "Internal"; "Unknown" for other values. Static. */
KVTIER_EXPORT const char* kvtier_code_name(kvtier_code code);

/* ---- Errors ----------------------------------------------------------- */

/* KVTIER_OK for a NULL error. */
KVTIER_EXPORT kvtier_code kvtier_error_code(const kvtier_error* err);
/* The message; valid until kvtier_error_free(err). "" for a NULL error. */
KVTIER_EXPORT const char* kvtier_error_message(const kvtier_error* err);
/* Frees an error; NULL is a no-op. */
KVTIER_EXPORT void kvtier_error_free(kvtier_error* err);

/* ---- Cache ------------------------------------------------------------ */

/* Fills *options with the defaults and struct_size = sizeof(kvtier_options).
 * NULL is a no-op. */
KVTIER_EXPORT void kvtier_options_init(kvtier_options* options);

/* Opens a cache into *cache (set to NULL on failure). Errors:
 * INVALID_ARGUMENT (NULL pointers, a struct_size smaller than version 1's,
 * a bad namespace or option), NOT_SUPPORTED (a larger struct_size with
 * non-zero unknown bytes), and every error of kvtier::Cache::Open (BUSY
 * for a store held by another process, ...). */
KVTIER_EXPORT kvtier_code kvtier_open(const kvtier_options* options, kvtier_cache** cache,
                                      kvtier_error** err);

/* Flushes (every resident block made durable), closes the store and frees
 * `cache`, whatever the outcome; returns the flush/close error if any.
 * Live leases stay valid. NULL is a no-op returning KVTIER_OK. */
KVTIER_EXPORT kvtier_code kvtier_close(kvtier_cache* cache, kvtier_error** err);

/* Tokens per block and payload bytes per block of the cache's layout; 0
 * for a NULL cache. */
KVTIER_EXPORT size_t kvtier_block_size(const kvtier_cache* cache);
KVTIER_EXPORT size_t kvtier_block_bytes(const kvtier_cache* cache);

/* Looks up the longest cached prefix of tokens[0..num_tokens) in whole
 * blocks and returns a lease pinning it in *lease (possibly with 0 blocks;
 * always released by the caller). A miss is not an error. `tokens` may be
 * NULL only when num_tokens is 0. */
KVTIER_EXPORT kvtier_code kvtier_lookup(kvtier_cache* cache, const uint32_t* tokens,
                                        size_t num_tokens, kvtier_lease** lease,
                                        kvtier_error** err);

/* Caches blocks first_block .. first_block+num_blocks-1 of `tokens`
 * (blocks[j] is the payload of block first_block+j; each exactly
 * kvtier_block_bytes() bytes). KVTIER_OK if cached or already cached.
 * Stops at the first error: INVALID_ARGUMENT (tokens do not cover a block,
 * wrong payload size, NULL data), FULL (every resident block pinned). */
KVTIER_EXPORT kvtier_code kvtier_insert_blocks(kvtier_cache* cache, const uint32_t* tokens,
                                               size_t num_tokens, size_t first_block,
                                               const kvtier_block* blocks, size_t num_blocks,
                                               kvtier_error** err);

/* Waits for the spill queue and makes every resident block durable. */
KVTIER_EXPORT kvtier_code kvtier_flush(kvtier_cache* cache, kvtier_error** err);

/* Drops every unpinned block from memory (not from the store). */
KVTIER_EXPORT kvtier_code kvtier_clear(kvtier_cache* cache, kvtier_error** err);

/* Fills the first stats->struct_size bytes of *stats (struct_size must be
 * at least 16: the header and `lookups`; it is kept). */
KVTIER_EXPORT kvtier_code kvtier_stats_get(kvtier_cache* cache, kvtier_stats* stats,
                                           kvtier_error** err);

/* ---- Lease ------------------------------------------------------------ */

/* Tokens covered (num_blocks * block_size), blocks pinned, and blocks that
 * came from the store in this lookup. Any out-pointer may be NULL. */
KVTIER_EXPORT kvtier_code kvtier_lease_info(const kvtier_lease* lease, size_t* matched_tokens,
                                            size_t* num_blocks, size_t* blocks_from_disk,
                                            kvtier_error** err);

/* Payload of block `index` (< num_blocks): read-only, valid until the lease
 * is released. INVALID_ARGUMENT for an index out of range. */
KVTIER_EXPORT kvtier_code kvtier_lease_block(const kvtier_lease* lease, size_t index,
                                             kvtier_block* block, kvtier_error** err);

/* Blocks first .. first+count-1 at once (bindings fetch the whole table
 * in one call): blocks[j] as kvtier_lease_block(lease, first + j).
 * INVALID_ARGUMENT if the range passes num_blocks or blocks is NULL with
 * count > 0. */
KVTIER_EXPORT kvtier_code kvtier_lease_blocks(const kvtier_lease* lease, size_t first,
                                              kvtier_block* blocks, size_t count,
                                              kvtier_error** err);

/* Unpins the blocks and frees the lease. NULL is a no-op returning OK.
 * A second release of the same lease is INVALID_ARGUMENT in checked builds
 * (undefined behaviour otherwise). */
KVTIER_EXPORT kvtier_code kvtier_lease_release(kvtier_lease* lease, kvtier_error** err);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVTIER_KVTIER_H_ */
