"""ctypes declarations of the C ABI (include/kvtier/kvtier.h) and the
loading of libkvtier.so. Private to the kvtier package."""
import ctypes
import ctypes.util
import os

ABI_VERSION = 1


class Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("num_layers", ctypes.c_uint32),
        ("num_kv_heads", ctypes.c_uint32),
        ("head_dim", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),
        ("dtype", ctypes.c_uint32),
        ("model", ctypes.c_char_p),
        ("revision", ctypes.c_char_p),
        ("tokenizer", ctypes.c_char_p),
        ("salt", ctypes.c_char_p),
        ("tp_rank", ctypes.c_uint32),
        ("tp_size", ctypes.c_uint32),
        ("memory_bytes", ctypes.c_uint64),
        ("store", ctypes.c_char_p),
        ("spill_policy", ctypes.c_uint32),
        ("spill_threads", ctypes.c_uint32),
        ("store_max_bytes", ctypes.c_uint64),
        ("store_sync_writes", ctypes.c_uint32),
        ("store_read_only", ctypes.c_uint32),
    ]


STAT_FIELDS = (
    "lookups lookup_blocks memory_hits disk_hits misses lookups_with_hit "
    "inserts insert_duplicates insert_rejected evictions spills promotions "
    "bytes_written_raw bytes_written_stored bytes_read_raw bytes_read_stored "
    "corrupt_records store_errors spill_retries spill_dropped queue_blocks "
    "queue_bytes resident_blocks pinned_blocks memory_bytes memory_budget "
    "memory_overhead_bytes disk_records disk_bytes disk_budget").split()


class Stats(ctypes.Structure):
    _fields_ = ([("struct_size", ctypes.c_uint32), ("reserved", ctypes.c_uint32)] +
                [(name, ctypes.c_uint64) for name in STAT_FIELDS])


class Block(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


def _find_library():
    path = os.environ.get("KVTIER_LIBRARY")
    if path:
        return path
    try:  # written by `cmake --install` next to this file
        from . import _install
        return os.path.normpath(os.path.join(os.path.dirname(__file__), _install.LIBRARY))
    except ImportError:
        pass
    name = ctypes.util.find_library("kvtier")
    if name:
        return name
    raise ImportError("kvtier: libkvtier.so not found; set KVTIER_LIBRARY to its path, "
                      "or install kvtier with `cmake --install`")


def load():
    lib = ctypes.CDLL(_find_library())
    p, sz, u32p = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32)
    err = ctypes.POINTER(ctypes.c_void_p)
    szp = ctypes.POINTER(ctypes.c_size_t)
    sigs = {
        "kvtier_abi_version": (ctypes.c_int, []),
        "kvtier_lease_checks_enabled": (ctypes.c_int, []),
        "kvtier_code_name": (ctypes.c_char_p, [ctypes.c_int]),
        "kvtier_error_code": (ctypes.c_int, [p]),
        "kvtier_error_message": (ctypes.c_char_p, [p]),
        "kvtier_error_free": (None, [p]),
        "kvtier_options_init": (None, [ctypes.POINTER(Options)]),
        "kvtier_open": (ctypes.c_int, [ctypes.POINTER(Options), ctypes.POINTER(p), err]),
        "kvtier_close": (ctypes.c_int, [p, err]),
        "kvtier_block_size": (sz, [p]),
        "kvtier_block_bytes": (sz, [p]),
        "kvtier_lookup": (ctypes.c_int, [p, u32p, sz, ctypes.POINTER(p), err]),
        "kvtier_insert_blocks": (ctypes.c_int, [p, u32p, sz, sz, ctypes.POINTER(Block), sz, err]),
        "kvtier_flush": (ctypes.c_int, [p, err]),
        "kvtier_clear": (ctypes.c_int, [p, err]),
        "kvtier_stats_get": (ctypes.c_int, [p, ctypes.POINTER(Stats), err]),
        "kvtier_lease_info": (ctypes.c_int, [p, szp, szp, szp, err]),
        "kvtier_lease_block": (ctypes.c_int, [p, sz, ctypes.POINTER(Block), err]),
        "kvtier_lease_blocks": (ctypes.c_int, [p, sz, ctypes.POINTER(Block), sz, err]),
        "kvtier_lease_release": (ctypes.c_int, [p, err]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    if lib.kvtier_abi_version() != ABI_VERSION:
        raise ImportError("kvtier: libkvtier.so has ABI version %d, this package needs %d"
                          % (lib.kvtier_abi_version(), ABI_VERSION))
    return lib
