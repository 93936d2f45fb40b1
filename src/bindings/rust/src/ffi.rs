//! The C ABI of include/kvtier/kvtier.h, declared by hand (no bindgen).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

pub const KVTIER_ABI_VERSION: c_int = 1;

pub enum kvtier_cache {}
pub enum kvtier_lease {}
pub enum kvtier_error {}

#[repr(C)]
pub struct kvtier_options {
    pub struct_size: u32,
    pub num_layers: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub block_size: u32,
    pub dtype: u32,
    pub model: *const c_char,
    pub revision: *const c_char,
    pub tokenizer: *const c_char,
    pub salt: *const c_char,
    pub tp_rank: u32,
    pub tp_size: u32,
    pub memory_bytes: u64,
    pub store: *const c_char,
    pub spill_policy: u32,
    pub spill_threads: u32,
    pub store_max_bytes: u64,
    pub store_sync_writes: u32,
    pub store_read_only: u32,
}

/// Counters of the cache (CacheStats in kvtier/cache.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvtier_stats {
    pub struct_size: u32,
    pub reserved: u32,
    pub lookups: u64,
    pub lookup_blocks: u64,
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    pub lookups_with_hit: u64,
    pub inserts: u64,
    pub insert_duplicates: u64,
    pub insert_rejected: u64,
    pub evictions: u64,
    pub spills: u64,
    pub promotions: u64,
    pub bytes_written_raw: u64,
    pub bytes_written_stored: u64,
    pub bytes_read_raw: u64,
    pub bytes_read_stored: u64,
    pub corrupt_records: u64,
    pub store_errors: u64,
    pub spill_retries: u64,
    pub spill_dropped: u64,
    pub queue_blocks: u64,
    pub queue_bytes: u64,
    pub resident_blocks: u64,
    pub pinned_blocks: u64,
    pub memory_bytes: u64,
    pub memory_budget: u64,
    pub memory_overhead_bytes: u64,
    pub disk_records: u64,
    pub disk_bytes: u64,
    pub disk_budget: u64,
}

#[repr(C)]
pub struct kvtier_block {
    pub data: *const c_void,
    pub size: usize,
}

extern "C" {
    pub fn kvtier_abi_version() -> c_int;
    pub fn kvtier_code_name(code: c_int) -> *const c_char;
    pub fn kvtier_error_message(err: *const kvtier_error) -> *const c_char;
    pub fn kvtier_error_free(err: *mut kvtier_error);
    pub fn kvtier_options_init(options: *mut kvtier_options);
    pub fn kvtier_open(
        options: *const kvtier_options,
        cache: *mut *mut kvtier_cache,
        err: *mut *mut kvtier_error,
    ) -> c_int;
    pub fn kvtier_close(cache: *mut kvtier_cache, err: *mut *mut kvtier_error) -> c_int;
    pub fn kvtier_block_size(cache: *const kvtier_cache) -> usize;
    pub fn kvtier_block_bytes(cache: *const kvtier_cache) -> usize;
    pub fn kvtier_lookup(
        cache: *mut kvtier_cache,
        tokens: *const u32,
        num_tokens: usize,
        lease: *mut *mut kvtier_lease,
        err: *mut *mut kvtier_error,
    ) -> c_int;
    pub fn kvtier_insert_blocks(
        cache: *mut kvtier_cache,
        tokens: *const u32,
        num_tokens: usize,
        first_block: usize,
        blocks: *const kvtier_block,
        num_blocks: usize,
        err: *mut *mut kvtier_error,
    ) -> c_int;
    pub fn kvtier_flush(cache: *mut kvtier_cache, err: *mut *mut kvtier_error) -> c_int;
    pub fn kvtier_stats_get(
        cache: *mut kvtier_cache,
        stats: *mut kvtier_stats,
        err: *mut *mut kvtier_error,
    ) -> c_int;
    pub fn kvtier_lease_info(
        lease: *const kvtier_lease,
        matched_tokens: *mut usize,
        num_blocks: *mut usize,
        blocks_from_disk: *mut usize,
        err: *mut *mut kvtier_error,
    ) -> c_int;
    pub fn kvtier_lease_block(
        lease: *const kvtier_lease,
        index: usize,
        block: *mut kvtier_block,
        err: *mut *mut kvtier_error,
    ) -> c_int;
    pub fn kvtier_lease_release(lease: *mut kvtier_lease, err: *mut *mut kvtier_error) -> c_int;
}
