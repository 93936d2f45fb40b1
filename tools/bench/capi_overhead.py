#!/usr/bin/env python3
"""One in-memory lookup through Python (the kvtier package), through the C
ABI and through the C++ API, in one invocation: runs kvtier-capi-bench (C++
and C figures, Google Benchmark, before and after the Python part) and
times the Python binding on an identical cache with timeit (every figure
the minimum of 7 repetitions: the one least disturbed by other load), then
prints each figure as a ratio of the
C++ call for the same prompt size.

  python3 tools/bench/capi_overhead.py \
      --bench build-rel/tools/bench/kvtier-capi-bench \
      --lib build-rel/src/capi/libkvtier.so.0

Python's lookup: `with cache.lookup(tokens) as lease:` plus lease.block(i)
(a zero-copy memoryview) for every block, the prompt as a list of ints."""
import argparse
import json
import os
import subprocess
import sys
import timeit

LAYERS, HEADS, DIM, BS = 4, 8, 128, 16  # as capi_overhead_bench.cc
SIZES = (4, 64)


def prompt(blocks):
    return [i * 2654435761 % (1 << 32) % 150000 for i in range(blocks * BS)]


def run_native(bench):
    out = subprocess.run([bench, "--benchmark_format=json", "--benchmark_repetitions=7",
                          "--benchmark_min_time=0.1"],
                         check=True, capture_output=True, text=True).stdout
    ns = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") == "iteration":
            assert b["time_unit"] == "ns", b["time_unit"]
            ns[b["run_name"]] = min(ns.get(b["run_name"], float("inf")), b["real_time"])
    return ns


def run_python(lib):
    os.environ["KVTIER_LIBRARY"] = lib
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src", "bindings", "python"))
    import kvtier
    ns = {}
    block_bytes = 2 * LAYERS * HEADS * DIM * BS * 2
    with kvtier.Cache(model="capi-bench", num_layers=LAYERS, num_kv_heads=HEADS, head_dim=DIM,
                      block_size=BS, memory_bytes=2 * 64 * block_bytes) as cache:
        full = prompt(max(SIZES))
        cache.insert(full, 0, [bytes([7]) * block_bytes] * max(SIZES))
        for n in SIZES:
            tokens = full[:n * BS]

            def lookup():
                with cache.lookup(tokens) as lease:
                    for i in range(lease.num_blocks):
                        lease.block(i)
            with cache.lookup(tokens) as lease:
                assert lease.num_blocks == n, lease.num_blocks
            number = 20000 // n
            runs = timeit.repeat(lookup, number=number, repeat=7)
            ns["py_lookup/%d" % n] = min(runs) / number * 1e9
    return ns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of kvtier-capi-bench (Release build)")
    ap.add_argument("--lib", required=True, help="path of libkvtier.so of the same build")
    args = ap.parse_args()
    # Native before and after Python, so a change of machine load during
    # the run does not favour one side; every figure is a minimum.
    before = run_native(args.bench)
    ns = run_python(os.path.abspath(args.lib))
    after = run_native(args.bench)
    ns.update({k: min(before[k], after[k]) for k in before})
    print("%-14s %12s %10s" % ("call", "ns/lookup", "vs C++"))
    for n in SIZES:
        base = ns["cpp_lookup/%d" % n]
        for kind in ("cpp", "c", "py"):
            name = "%s_lookup/%d" % (kind, n)
            print("%-14s %12.0f %9.2fx" % (name, ns[name], ns[name] / base))


if __name__ == "__main__":
    main()
