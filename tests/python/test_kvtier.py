"""Tests of the Python package kvtier (src/bindings/python), run by ctest
with Debian's python3 against the build's libkvtier.so (KVTIER_LIBRARY)."""
import ctypes
import os
import subprocess
import sys
import tempfile
import unittest

import kvtier

try:
    import numpy
except ImportError:
    numpy = None

LAYOUT = dict(num_layers=2, num_kv_heads=2, head_dim=8, block_size=4, dtype="f16")
BLOCK_BYTES = 2 * 2 * 2 * 8 * 4 * 2


def payload(seed):
    return bytes((seed * 31 + i * 7) % 251 for i in range(BLOCK_BYTES))


def open_cache(**kw):
    args = dict(LAYOUT, model="py-test-model", memory_bytes=64 * BLOCK_BYTES)
    args.update(kw)
    return kvtier.Cache(**args)


class CacheTest(unittest.TestCase):
    def test_prepare_store_release_round_trip(self):
        tokens = list(range(100, 114))  # 3 full blocks + 2 tokens
        with open_cache() as cache:
            self.assertEqual(cache.block_bytes, BLOCK_BYTES)
            with cache.lookup(tokens) as lease:
                self.assertEqual(lease.matched_tokens, 0)
                start = lease.matched_tokens // cache.block_size
                cache.insert(tokens, start, [payload(i) for i in range(3)])
            with cache.lookup(tokens) as lease:
                self.assertEqual((lease.matched_tokens, lease.num_blocks), (12, 3))
                for i in range(3):
                    self.assertEqual(bytes(lease.block(i)), payload(i))
                with self.assertRaises(kvtier.InvalidArgument):
                    lease.block(3)
                with self.assertRaises(kvtier.InvalidArgument):
                    lease.block(-1)
            stats = cache.stats()
            self.assertEqual(stats["inserts"], 3)
            self.assertEqual(stats["memory_hits"], 3)
            self.assertEqual(stats["pinned_blocks"], 0)

    def test_block_views_are_zero_copy_and_read_only(self):
        tokens = list(range(8))
        with open_cache() as cache:
            data = bytearray(payload(1))
            cache.insert(tokens, 0, [data, memoryview(payload(2))])
            with cache.lookup(tokens) as lease:
                view = lease.block(0)
                address, size = lease.block_address(0)
                # The view is over the library's pinned bytes, not a copy.
                self.assertEqual(ctypes.addressof(view.obj), address)
                self.assertEqual(view.nbytes, size)
                self.assertTrue(view.readonly)
                with self.assertRaises(TypeError):
                    view[0] = 0
                data[0] ^= 0xFF  # the cache copied the input at insert
                self.assertEqual(bytes(view), payload(1))
            # Released with its lease: no read of unpinned memory.
            with self.assertRaises(ValueError):
                view[0]

    @unittest.skipIf(numpy is None, "numpy not installed")
    def test_numpy_arrays_are_views_shaped_by_the_layout(self):
        tokens = numpy.arange(8, dtype=numpy.uint32)
        with open_cache() as cache:
            src = numpy.arange(BLOCK_BYTES // 2, dtype=numpy.float16)
            cache.insert(tokens, 0, [src, src[::-1].copy()])
            lease = cache.lookup(tokens)
            arr = lease.array(1)
            self.assertEqual(arr.shape, (2, 2, 4, 2, 8))
            self.assertEqual(arr.dtype, numpy.float16)
            self.assertFalse(arr.flags.writeable)
            self.assertEqual(arr.__array_interface__["data"][0], lease.block_address(1)[0])
            self.assertTrue((arr.reshape(-1) == src[::-1]).all())
            # A live array keeps the release from unpinning under it.
            with self.assertRaises(kvtier.Error):
                lease.release()
            copy = arr.copy()
            del arr
            lease.release()
            self.assertTrue((copy.reshape(-1) == src[::-1]).all())

    def test_errors_carry_the_c_message(self):
        with self.assertRaises(kvtier.InvalidArgument) as ctx:
            open_cache(num_layers=0)
        self.assertIn("num_layers", str(ctx.exception))
        self.assertEqual(ctx.exception.code_name, "InvalidArgument")
        with open_cache() as cache:
            with self.assertRaises(kvtier.InvalidArgument) as ctx:
                cache.insert(list(range(8)), 0, [b"short"])
            self.assertIn("5", ctx.exception.message)
            with self.assertRaises(kvtier.InvalidArgument):
                cache.insert(list(range(3)), 0, [payload(0)])  # tokens do not cover block 0
        with self.assertRaises(kvtier.InvalidArgument):
            cache.lookup([1, 2, 3, 4])  # closed
        with self.assertRaises(ValueError):
            open_cache(dtype="f64")

    def test_full_when_every_block_is_pinned(self):
        tokens = list(range(12))
        with open_cache(memory_bytes=2 * BLOCK_BYTES) as cache:
            cache.insert(tokens, 0, [payload(0), payload(1)])
            with cache.lookup(tokens):
                with self.assertRaises(kvtier.Full):
                    cache.insert(tokens, 2, [payload(2)])
            cache.insert(tokens, 2, [payload(2)])

    def test_lease_outlives_its_cache_and_double_release_is_a_no_op(self):
        tokens = list(range(4))
        cache = open_cache()
        cache.insert(tokens, 0, [payload(3)])
        lease = cache.lookup(tokens)
        cache.close()
        cache.close()
        self.assertEqual(bytes(lease.block(0)), payload(3))
        lease.release()
        lease.release()
        with self.assertRaises(kvtier.InvalidArgument):
            lease.block(0)


CHILD = r"""
import sys, kvtier
with kvtier.Cache(model="py-test-model", num_layers=2, num_kv_heads=2, head_dim=8,
                  block_size=4, store=sys.argv[1], memory_bytes=1 << 20) as cache:
    tokens = list(range(500, 512))
    if sys.argv[2] == "write":
        cache.insert(tokens, 0, [bytes([i]) * %d for i in range(3)])
    else:
        with cache.lookup(tokens) as lease:
            assert lease.num_blocks == 3 and lease.blocks_from_disk == 3, lease.num_blocks
            assert bytes(lease.block(2)) == bytes([2]) * %d
            print("warm")
""" % (BLOCK_BYTES, BLOCK_BYTES)


class RestartTest(unittest.TestCase):
    def test_a_new_process_finds_the_blocks_on_disk(self):
        with tempfile.TemporaryDirectory() as tmp:
            store = os.path.join(tmp, "store")
            for mode in ("write", "read"):
                out = subprocess.run([sys.executable, "-c", CHILD, store, mode],
                                     capture_output=True, text=True)
                self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("warm", out.stdout)
            # And this process too, after the children exited.
            with open_cache(store=store) as cache:
                with cache.lookup(list(range(500, 512))) as lease:
                    self.assertEqual(lease.blocks_from_disk, 3)


if __name__ == "__main__":
    print("kvtier test: python", sys.version.split()[0], "numpy",
          numpy.__version__ if numpy else "absent", file=sys.stderr)
    unittest.main()
