"""kvtier for Python: the prefix KV-cache through its C ABI (ctypes).

    import kvtier
    with kvtier.Cache(model="my-model", num_layers=2, num_kv_heads=2,
                      head_dim=8, block_size=4, store="/var/cache/kvtier") as cache:
        with cache.lookup(tokens) as lease:          # prepare
            start = lease.matched_tokens             # run the model from here
            views = [lease.block(i) for i in range(lease.num_blocks)]
            cache.insert(tokens, start // cache.block_size, new_payloads)  # store
        # leaving the `with` releases the lease (unpins its blocks)

Ownership: a Cache owns its C handle until close() (or the end of its
`with`); a Lease pins its blocks until release(). Block views (memoryview,
or numpy arrays from Lease.array) are zero-copy and read-only: they are
valid until the lease is released. release() invalidates the memoryviews it
handed out; a numpy array still alive then makes release() raise Error
(copy the array first) instead of leaving it pointing at unpinned memory.
Errors raise kvtier.Error (a subclass per code) carrying the C message.
Thread-safety: as the C ABI (a cache from any thread, a lease from one).
"""
import array
import ctypes
import weakref

from . import _ffi

_lib = _ffi.load()

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

__all__ = ["Cache", "Lease", "Error", "DTYPES", "lease_checks_enabled"]

DTYPES = {"f32": 1, "f16": 2, "bf16": 3, "int8": 4, "fp8e4m3": 5, "fp8e5m2": 6}
_NUMPY_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "uint16",
                 "int8": "int8", "fp8e4m3": "uint8", "fp8e5m2": "uint8"}
_SPILL = {"evict": 0, "write-through": 1, "auto": 2}


class Error(Exception):
    """A failed kvtier call: .code (int), .code_name and the C message."""

    def __init__(self, code, message):
        self.code = code
        self.code_name = _lib.kvtier_code_name(code).decode()
        self.message = message
        super().__init__("%s: %s" % (self.code_name, message))


class InvalidArgument(Error, ValueError):
    pass


class Busy(Error):
    pass


class Full(Error):
    pass


_ERRORS = {3: InvalidArgument, 5: Busy, 6: Full}


def _call(fn, *args):
    err = ctypes.c_void_p()
    code = fn(*args, ctypes.byref(err))
    if code != 0:
        message = _lib.kvtier_error_message(err).decode(errors="replace") if err else ""
        _lib.kvtier_error_free(err)
        raise _ERRORS.get(code, Error)(code, message)


def lease_checks_enabled():
    """True if the library detects a released lease used again."""
    return bool(_lib.kvtier_lease_checks_enabled())


def _tokens(tokens):
    if _np is not None and isinstance(tokens, _np.ndarray):
        arr = _np.ascontiguousarray(tokens, dtype=_np.uint32)
        return arr, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), arr.size
    arr = array.array("I", tokens)  # C unsigned int: 32 bits on every kvtier platform
    n = len(arr)
    ptr = (ctypes.c_uint32 * n).from_buffer(arr) if n else None
    return arr, ptr, n


class Cache:
    """An open cache. Keyword arguments are the fields of kvtier_options
    (dtype by name, "f16" by default; spill_policy "auto", "evict" or
    "write-through"; store None for memory-only)."""

    def __init__(self, model, num_layers, num_kv_heads, head_dim, block_size=16,
                 dtype="f16", revision="", tokenizer="", salt="", tp_rank=0, tp_size=1,
                 memory_bytes=1 << 30, store=None, spill_policy="auto", spill_threads=1,
                 store_max_bytes=16 << 30, store_sync_writes=False, store_read_only=False):
        if dtype not in DTYPES:
            raise InvalidArgument(3, "dtype %r is not one of %s" % (dtype, sorted(DTYPES)))
        if spill_policy not in _SPILL:
            raise InvalidArgument(3, "spill_policy %r is not one of %s" % (spill_policy, sorted(_SPILL)))
        o = _ffi.Options()
        _lib.kvtier_options_init(ctypes.byref(o))
        o.num_layers, o.num_kv_heads, o.head_dim = num_layers, num_kv_heads, head_dim
        o.block_size, o.dtype = block_size, DTYPES[dtype]
        o.model, o.revision = model.encode(), revision.encode()
        o.tokenizer, o.salt = tokenizer.encode(), salt.encode()
        o.tp_rank, o.tp_size, o.memory_bytes = tp_rank, tp_size, memory_bytes
        o.store = store.encode() if store else None
        o.spill_policy, o.spill_threads = _SPILL[spill_policy], spill_threads
        o.store_max_bytes = store_max_bytes
        o.store_sync_writes, o.store_read_only = int(store_sync_writes), int(store_read_only)
        self._handle = ctypes.c_void_p()
        _call(_lib.kvtier_open, ctypes.byref(o), ctypes.byref(self._handle))
        self.dtype = dtype
        self.layout = (num_layers, num_kv_heads, head_dim)
        self.block_size = _lib.kvtier_block_size(self._handle)
        self.block_bytes = _lib.kvtier_block_bytes(self._handle)
        self._block_type = ctypes.c_char * self.block_bytes

    def _h(self):
        if not self._handle:
            raise InvalidArgument(3, "cache is closed")
        return self._handle

    def lookup(self, tokens):
        """A Lease on the longest cached prefix of `tokens` (a sequence of
        ints or a numpy array of uint32), in whole blocks."""
        keep, ptr, n = _tokens(tokens)
        handle = ctypes.c_void_p()
        _call(_lib.kvtier_lookup, self._h(), ptr, n, ctypes.byref(handle))
        return Lease(handle, self)

    def insert(self, tokens, first_block, payloads):
        """Caches blocks first_block, first_block+1, ... of `tokens`; each
        payload is a bytes-like object (bytes, memoryview, numpy array) of
        exactly block_bytes bytes. Raises Full when every resident block is
        pinned."""
        keep, ptr, n = _tokens(tokens)
        views = [memoryview(p).cast("B") for p in payloads]
        blocks = (_ffi.Block * len(views))()
        holders = []
        for j, (p, v) in enumerate(zip(payloads, views)):
            if v.readonly:  # ctypes needs a writable buffer to take its address
                data = p if isinstance(p, bytes) else v.tobytes()  # bytes: no copy
                buf = ctypes.c_char_p(data) if v.nbytes else None
                holders.append(buf)
                blocks[j].data = ctypes.cast(buf, ctypes.c_void_p) if buf else None
            else:
                arr = (ctypes.c_char * v.nbytes).from_buffer(v)
                holders.append(arr)
                blocks[j].data = ctypes.addressof(arr)
            blocks[j].size = v.nbytes
        _call(_lib.kvtier_insert_blocks, self._h(), ptr, n, first_block, blocks, len(views))

    def flush(self):
        _call(_lib.kvtier_flush, self._h())

    def clear(self):
        _call(_lib.kvtier_clear, self._h())

    def stats(self):
        """The counters of CacheStats as a dict."""
        s = _ffi.Stats()
        s.struct_size = ctypes.sizeof(s)
        _call(_lib.kvtier_stats_get, self._h(), ctypes.byref(s))
        return {name: getattr(s, name) for name in _ffi.STAT_FIELDS}

    def close(self):
        """Flushes and closes; later calls raise InvalidArgument. Leases
        stay valid. Closing twice is a no-op."""
        if self._handle:
            handle, self._handle = self._handle, ctypes.c_void_p()
            _call(_lib.kvtier_close, handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None):
            _lib.kvtier_close(self._handle, None)


class Lease:
    """Pins the blocks of a cached prefix until release() (or the end of its
    `with`, or garbage collection)."""

    def __init__(self, handle, cache):
        self._handle = handle
        self._views = []
        self._arrays = []
        self._table = None
        mt, nb, fd = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
        _call(_lib.kvtier_lease_info, handle, ctypes.byref(mt), ctypes.byref(nb), ctypes.byref(fd))
        self.matched_tokens, self.num_blocks, self.blocks_from_disk = mt.value, nb.value, fd.value
        self._dtype, self._layout, self._block_size = cache.dtype, cache.layout, cache.block_size
        self._block_type = cache._block_type

    def __len__(self):
        return self.num_blocks

    def block_address(self, i):
        """The address of block i's payload in the library (for checks)."""
        if not self._handle:
            raise InvalidArgument(3, "lease was already released")
        if self._table is None:  # the whole block table in one C call
            self._table = (_ffi.Block * self.num_blocks)()
            _call(_lib.kvtier_lease_blocks, self._handle, 0, self._table, self.num_blocks)
        if not 0 <= i < self.num_blocks:
            raise InvalidArgument(3, "block index %d out of range: lease has %d blocks"
                                  % (i, self.num_blocks))
        b = self._table[i]
        return b.data, b.size

    def block(self, i):
        """Block i's payload as a read-only memoryview of the pinned bytes
        (no copy); valid until the lease is released."""
        address, size = self.block_address(i)
        if self._block_type is None or ctypes.sizeof(self._block_type) != size:
            self._block_type = ctypes.c_char * size  # a new ctypes type costs microseconds
        pinned = self._block_type.from_address(address)
        pinned.lease = self  # a live view (or numpy array) keeps the lease from __del__
        view = memoryview(pinned).cast("B").toreadonly()
        self._views.append(view)
        return view

    def array(self, i):
        """Block i as a read-only numpy array (no copy) shaped
        [num_layers, 2 (K, V), block_size, num_kv_heads, head_dim]; bf16 and
        fp8 as raw uint16/uint8. Requires numpy."""
        if _np is None:
            raise ImportError("kvtier: Lease.array needs numpy; use Lease.block")
        layers, heads, dim = self._layout
        arr = _np.frombuffer(self.block(i), dtype=_NUMPY_DTYPES[self._dtype])
        # numpy keeps no buffer export: release() checks this root array
        # (every view or reshape of it keeps it alive through .base).
        self._arrays.append(weakref.ref(arr))
        return arr.reshape(layers, 2, self._block_size, heads, dim)

    def release(self):
        """Unpins the blocks. Releasing twice is a no-op."""
        if not self._handle:
            return
        if any(ref() is not None for ref in self._arrays):
            raise Error(3, "a block of this lease is still used by a numpy array; "
                           "copy it or delete it before release()")
        for view in self._views:
            try:
                view.release()
            except BufferError:
                raise Error(3, "a block of this lease is still exported to another buffer; "
                               "delete it before release()")
        self._views = []
        handle, self._handle = self._handle, ctypes.c_void_p()
        _call(_lib.kvtier_lease_release, handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._views = []
            _lib.kvtier_lease_release(self._handle, None)
