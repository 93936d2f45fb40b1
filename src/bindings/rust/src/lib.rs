//! kvtier for Rust: a safe wrapper of the C ABI (libkvtier.so).
//!
//! `Cache` owns a `kvtier_cache*` (closed on drop); `Lease` owns a
//! `kvtier_lease*` and unpins its blocks on drop. Block slices borrow their
//! lease, so the borrow checker enforces "valid until the lease is
//! released". A lease may outlive its cache (as in the C ABI). Errors are
//! `Error { code, message }` with the C message.
//!
//! `Cache::prepare` and `Prefill::store_blocks` replay the reference
//! engine's prefill flow: look up the prompt, compute the uncached blocks,
//! store them, drop the session (releasing the pins).

mod ffi;

use std::ffi::{CStr, CString};
use std::fmt;
use std::ptr;

pub use ffi::kvtier_stats as Stats;

/// A failed kvtier call: the C code (kvtier_code) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

pub const INVALID_ARGUMENT: i32 = 3;
pub const BUSY: i32 = 5;
pub const FULL: i32 = 6;

impl Error {
    /// "InvalidArgument", "Busy", ... (kvtier_code_name).
    pub fn code_name(&self) -> &'static str {
        unsafe { CStr::from_ptr(ffi::kvtier_code_name(self.code)) }
            .to_str()
            .unwrap_or("Unknown")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code_name(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

// Runs a C call with an error out-param; turns a failure into Error.
fn check<F: FnOnce(*mut *mut ffi::kvtier_error) -> i32>(call: F) -> Result<()> {
    let mut err: *mut ffi::kvtier_error = ptr::null_mut();
    let code = call(&mut err);
    if code == 0 {
        return Ok(());
    }
    let message = if err.is_null() {
        String::new()
    } else {
        let m = unsafe { CStr::from_ptr(ffi::kvtier_error_message(err)) };
        m.to_string_lossy().into_owned()
    };
    unsafe { ffi::kvtier_error_free(err) };
    Err(Error { code, message })
}

fn c_string(field: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error {
        code: INVALID_ARGUMENT,
        message: format!("{} contains a NUL byte", field),
    })
}

/// Element types (kvtier_dtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32 = 1,
    F16 = 2,
    BF16 = 3,
    Int8 = 4,
    Fp8E4M3 = 5,
    Fp8E5M2 = 6,
}

/// Options of `Cache::open` (kvtier_options); `Options::new` sets the
/// defaults of kvtier_options_init.
#[derive(Clone, Debug)]
pub struct Options {
    pub model: String,
    pub revision: String,
    pub tokenizer: String,
    pub salt: String,
    pub num_layers: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub block_size: u32,
    pub dtype: DType,
    pub tp_rank: u32,
    pub tp_size: u32,
    pub memory_bytes: u64,
    /// None: memory-only; a directory; or "unix:PATH" (kvtierd).
    pub store: Option<String>,
    pub store_max_bytes: u64,
    pub spill_threads: u32,
}

impl Options {
    pub fn new(model: &str, num_layers: u32, num_kv_heads: u32, head_dim: u32) -> Options {
        Options {
            model: model.to_string(),
            revision: String::new(),
            tokenizer: String::new(),
            salt: String::new(),
            num_layers,
            num_kv_heads,
            head_dim,
            block_size: 16,
            dtype: DType::F16,
            tp_rank: 0,
            tp_size: 1,
            memory_bytes: 1 << 30,
            store: None,
            store_max_bytes: 16 << 30,
            spill_threads: 1,
        }
    }
}

/// An open cache. Thread-safe (`Send + Sync`), as the C ABI.
pub struct Cache {
    raw: *mut ffi::kvtier_cache,
}

unsafe impl Send for Cache {}
unsafe impl Sync for Cache {}

impl Cache {
    pub fn open(options: &Options) -> Result<Cache> {
        if unsafe { ffi::kvtier_abi_version() } != ffi::KVTIER_ABI_VERSION {
            return Err(Error { code: 7, message: "libkvtier.so has another ABI version".into() });
        }
        let model = c_string("model", &options.model)?;
        let revision = c_string("revision", &options.revision)?;
        let tokenizer = c_string("tokenizer", &options.tokenizer)?;
        let salt = c_string("salt", &options.salt)?;
        let store = match &options.store {
            Some(s) => Some(c_string("store", s)?),
            None => None,
        };
        let mut o = std::mem::MaybeUninit::<ffi::kvtier_options>::uninit();
        let mut o = unsafe {
            ffi::kvtier_options_init(o.as_mut_ptr());
            o.assume_init()
        };
        o.num_layers = options.num_layers;
        o.num_kv_heads = options.num_kv_heads;
        o.head_dim = options.head_dim;
        o.block_size = options.block_size;
        o.dtype = options.dtype as u32;
        o.model = model.as_ptr();
        o.revision = revision.as_ptr();
        o.tokenizer = tokenizer.as_ptr();
        o.salt = salt.as_ptr();
        o.tp_rank = options.tp_rank;
        o.tp_size = options.tp_size;
        o.memory_bytes = options.memory_bytes;
        o.store = store.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        o.store_max_bytes = options.store_max_bytes;
        o.spill_threads = options.spill_threads;
        let mut raw = ptr::null_mut();
        check(|err| unsafe { ffi::kvtier_open(&o, &mut raw, err) })?;
        Ok(Cache { raw })
    }

    pub fn block_size(&self) -> usize {
        unsafe { ffi::kvtier_block_size(self.raw) }
    }

    pub fn block_bytes(&self) -> usize {
        unsafe { ffi::kvtier_block_bytes(self.raw) }
    }

    /// A lease on the longest cached prefix of `tokens`, in whole blocks.
    pub fn lookup(&self, tokens: &[u32]) -> Result<Lease> {
        let mut raw = ptr::null_mut();
        check(|err| unsafe { ffi::kvtier_lookup(self.raw, tokens.as_ptr(), tokens.len(), &mut raw, err) })?;
        let mut lease = Lease { raw, matched_tokens: 0, num_blocks: 0, blocks_from_disk: 0 };
        check(|err| unsafe {
            ffi::kvtier_lease_info(
                raw,
                &mut lease.matched_tokens,
                &mut lease.num_blocks,
                &mut lease.blocks_from_disk,
                err,
            )
        })?;
        Ok(lease)
    }

    /// Caches blocks first_block, first_block+1, ... of `tokens`; each
    /// payload must be block_bytes() long. Err(FULL) when every resident
    /// block is pinned.
    pub fn insert_blocks(&self, tokens: &[u32], first_block: usize, payloads: &[&[u8]]) -> Result<()> {
        let blocks: Vec<ffi::kvtier_block> = payloads
            .iter()
            .map(|p| ffi::kvtier_block { data: p.as_ptr() as *const _, size: p.len() })
            .collect();
        check(|err| unsafe {
            ffi::kvtier_insert_blocks(
                self.raw,
                tokens.as_ptr(),
                tokens.len(),
                first_block,
                blocks.as_ptr(),
                blocks.len(),
                err,
            )
        })
    }

    pub fn flush(&self) -> Result<()> {
        check(|err| unsafe { ffi::kvtier_flush(self.raw, err) })
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats { struct_size: std::mem::size_of::<Stats>() as u32, ..Stats::default() };
        check(|err| unsafe { ffi::kvtier_stats_get(self.raw, &mut s, err) })?;
        Ok(s)
    }

    /// Flushes and closes, reporting the error (drop closes silently).
    pub fn close(mut self) -> Result<()> {
        let raw = std::mem::replace(&mut self.raw, ptr::null_mut());
        check(|err| unsafe { ffi::kvtier_close(raw, err) })
    }

    /// The prefill flow: looks up `tokens`; the model runs from
    /// `uncached_start()`; `store_blocks` caches what it computed.
    pub fn prepare(&self, tokens: &[u32]) -> Result<Prefill<'_>> {
        let cached = self.lookup(tokens)?;
        Ok(Prefill { cache: self, tokens: tokens.to_vec(), cached })
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            unsafe { ffi::kvtier_close(self.raw, ptr::null_mut()) };
        }
    }
}

/// Pins the blocks of a cached prefix; unpins them on drop.
pub struct Lease {
    raw: *mut ffi::kvtier_lease,
    matched_tokens: usize,
    num_blocks: usize,
    blocks_from_disk: usize,
}

// One thread at a time: movable between threads, not shared.
unsafe impl Send for Lease {}

impl Lease {
    pub fn matched_tokens(&self) -> usize {
        self.matched_tokens
    }
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }
    pub fn blocks_from_disk(&self) -> usize {
        self.blocks_from_disk
    }

    /// Block i's payload, borrowed from the lease (no copy).
    pub fn block(&self, i: usize) -> Result<&[u8]> {
        let mut b = ffi::kvtier_block { data: ptr::null(), size: 0 };
        check(|err| unsafe { ffi::kvtier_lease_block(self.raw, i, &mut b, err) })?;
        Ok(unsafe { std::slice::from_raw_parts(b.data as *const u8, b.size) })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        unsafe { ffi::kvtier_lease_release(self.raw, ptr::null_mut()) };
    }
}

/// The reference engine's prefill session over a `Lease`.
pub struct Prefill<'a> {
    cache: &'a Cache,
    tokens: Vec<u32>,
    cached: Lease,
}

impl<'a> Prefill<'a> {
    /// First token the model must compute (a multiple of the block size).
    pub fn uncached_start(&self) -> usize {
        self.cached.matched_tokens()
    }
    pub fn cached(&self) -> &Lease {
        &self.cached
    }
    /// Caches the newly computed blocks: new_blocks[j] is block
    /// uncached_start()/block_size + j. Blocks past the prompt's last full
    /// block are ignored, as in the reference.
    pub fn store_blocks(&self, new_blocks: &[&[u8]]) -> Result<()> {
        let bs = self.cache.block_size();
        let first = self.uncached_start() / bs;
        let full = self.tokens.len() / bs;
        let n = new_blocks.len().min(full.saturating_sub(first));
        self.cache.insert_blocks(&self.tokens, first, &new_blocks[..n])
    }
}

#[cfg(test)]
mod tests;
