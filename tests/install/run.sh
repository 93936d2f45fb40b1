#!/bin/sh
# capi_install_test: `cmake --install` the build tree into a fresh temp
# prefix, then consume the installed kvtier four ways: a C program through
# find_package(kvtier), the same program through pkg-config, the Python
# package (found on the prefix's dist-packages, library found relative to
# it) and the Rust crate (linked against the prefix's lib directory).
# Usage: run.sh BUILD_DIR SOURCE_DIR; tools from KVTIER_CMAKE, KVTIER_CC,
# KVTIER_PKG_CONFIG, KVTIER_PYTHON3, KVTIER_CARGO (set by ctest).
set -eu
build=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvtier-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

echo "== cmake --install $build --prefix $prefix"
"$KVTIER_CMAKE" --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; exit 1; }
libdir=$(dirname "$(find "$prefix" -name libkvtier.so -print -quit)")
test -f "$prefix/include/kvtier/kvtier.h"
test -f "$libdir/cmake/kvtier/kvtierConfig.cmake"
test -f "$libdir/pkgconfig/kvtier.pc"
# Only the C ABI is exported.
if nm -D --defined-only "$libdir/libkvtier.so" | awk '{print $3}' | grep -v '^kvtier_' | grep .; then
  echo "libkvtier.so exports symbols outside the C ABI (above)"; exit 1
fi

echo "== find_package(kvtier)"
CC=$KVTIER_CC "$KVTIER_CMAKE" -S "$src/tests/install/consumer" -B "$tmp/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/consumer.log" || { cat "$tmp/consumer.log"; exit 1; }
"$KVTIER_CMAKE" --build "$tmp/consumer" >>"$tmp/consumer.log" || { cat "$tmp/consumer.log"; exit 1; }
LD_LIBRARY_PATH=$libdir "$tmp/consumer/consumer"

echo "== pkg-config kvtier"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
"$KVTIER_CC" -o "$tmp/consumer-pc" "$src/tests/install/consumer/main.c" \
  $("$KVTIER_PKG_CONFIG" --cflags --libs kvtier)
LD_LIBRARY_PATH=$libdir "$tmp/consumer-pc"

echo "== python3 -c 'import kvtier' from the prefix"
pydir=$(find "$prefix" -type d -name kvtier -path '*dist-packages*' -print -quit)
(cd "$tmp" && env -u KVTIER_LIBRARY PYTHONPATH="$(dirname "$pydir")" "$KVTIER_PYTHON3" -B -c '
import kvtier, sys
assert kvtier.__file__.startswith(sys.argv[1]), kvtier.__file__
with kvtier.Cache(model="m", num_layers=1, num_kv_heads=1, head_dim=8, block_size=4) as c:
    c.insert([1, 2, 3, 4], 0, [bytes(c.block_bytes)])
    with c.lookup([1, 2, 3, 4]) as lease:
        assert lease.num_blocks == 1
print("python: OK")' "$prefix")

echo "== cargo run --offline against $libdir"
KVTIER_LIB_DIR=$libdir "$KVTIER_CARGO" run --offline -q \
  --manifest-path "$src/src/bindings/rust/Cargo.toml"
echo "capi_install_test: OK"
