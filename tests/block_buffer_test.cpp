// BlockBuffer (shared immutable block bytes, intrusive refcount) and the
// BufferPool that recycles its large allocations.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "memory/block_buffer.h"
#include "memory/buffer_pool.h"
#include "memory/chunk_arena.h"

using namespace kvtier;
using namespace kvtier::internal;

namespace {

std::vector<std::byte> Bytes(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(seed + i * 7);
  return v;
}

}  // namespace

TEST_CASE("a block buffer holds its tokens and payload; copies share them") {
  const std::vector<Token> tokens = {1, 2, 3, 4, 5};
  const auto payload = Bytes(1000, 3);
  BlockBuffer a = BlockBuffer::Make(tokens, payload);
  REQUIRE(!a.empty());
  REQUIRE(a.payload_bytes() == 1000);
  CHECK(std::equal(a.tokens().begin(), a.tokens().end(), tokens.begin(), tokens.end()));
  CHECK(std::equal(a.payload().begin(), a.payload().end(), payload.begin(), payload.end()));
  CHECK(reinterpret_cast<uintptr_t>(a.payload().data()) % 16 == 0);
  CHECK(a.TokensEqual(tokens));
  const std::vector<Token> other = {1, 2, 3, 4, 6};
  CHECK(!a.TokensEqual(other));
  CHECK(!a.TokensEqual(std::span(tokens).first(4)));

  BlockBuffer b = a;  // shares
  CHECK(b.payload().data() == a.payload().data());
  BlockBuffer c = std::move(b);
  CHECK(b.empty());
  CHECK(b.payload().empty());
  CHECK(b.payload_bytes() == 0);
  CHECK(c.payload().data() == a.payload().data());
  a = BlockBuffer();
  // The bytes live on while a copy does.
  CHECK(std::equal(c.payload().begin(), c.payload().end(), payload.begin(), payload.end()));
  c = c;  // self-assignment keeps the bytes
  CHECK(std::equal(c.payload().begin(), c.payload().end(), payload.begin(), payload.end()));
}

TEST_CASE("an empty buffer has no tokens or payload") {
  BlockBuffer e;
  CHECK(e.empty());
  CHECK(e.tokens().empty());
  CHECK(e.TokensEqual({}));
  BlockBuffer z = BlockBuffer::Make({}, {});
  CHECK(!z.empty());
  CHECK(z.payload_bytes() == 0);
  CHECK(z.TokensEqual({}));
}

TEST_CASE("copies released on many threads free the bytes exactly once") {
  const std::vector<Token> tokens(16, 9);
  for (int round = 0; round < 20; ++round) {
    BlockBuffer shared = BlockBuffer::Make(tokens, Bytes(64 * 1024, static_cast<uint8_t>(round)));
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};  // Catch's assertions are not thread-safe: count here
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([copy = shared, &wrong] {
        std::vector<BlockBuffer> copies(50, copy);
        uint64_t sum = 0;
        for (const auto& c : copies) sum += static_cast<uint8_t>(c.payload()[100]);
        if (sum != 50 * static_cast<uint8_t>(copy.payload()[100])) wrong.fetch_add(1);
      });
    }
    shared = BlockBuffer();
    for (auto& t : threads) t.join();
    REQUIRE(wrong.load() == 0);
  }
}

TEST_CASE("the pool hands a freed allocation of the same size to the next caller") {
  BufferPool pool(4 << 20);
  const size_t size = GENERATE(size_t{256 * 1024}, size_t{1536 * 1024});  // chunk slot, own allocation
  INFO("size " << size);
  void* p = pool.Allocate(size);
  CHECK(pool.Stats().fresh == 1);
  pool.Free(p, size);
  CHECK(pool.Stats().kept_bytes == size);
  void* q = pool.Allocate(size);
  CHECK(q == p);
  CHECK(pool.Stats().reused == 1);
  CHECK(pool.Stats().kept_bytes == 0);
  // Another size does not take it.
  pool.Free(q, size);
  void* r = pool.Allocate(size + 16);
  CHECK(r != q);
  pool.Free(r, size + 16);
  CHECK(pool.Stats().kept_buffers == 2);
  pool.Trim();
  CHECK(pool.Stats().kept_bytes == 0);
  CHECK(pool.Stats().kept_buffers == 0);
  CHECK(pool.Stats().chunks == 0);
}

TEST_CASE("buffers of one size are carved from one huge-page chunk") {
  BufferPool pool(16 << 20);
  const size_t size = 256 * 1024 + 80;  // a 256 KiB block with its header and 16 tokens
  std::vector<void*> ps;
  for (int i = 0; i < 40; ++i) ps.push_back(pool.Allocate(size));
  CHECK(reinterpret_cast<uintptr_t>(ps[0]) % ChunkArena::kChunkBytes == 0);
  for (int i = 1; i < 31; ++i)
    CHECK(static_cast<char*>(ps[i]) - static_cast<char*>(ps[0]) == static_cast<ptrdiff_t>(i * size));
  CHECK(pool.Stats().chunks == 2);  // 31 slots of this size fit in 8 MiB
  for (void* p : ps) static_cast<char*>(p)[size - 1] = 1;  // every byte is usable
  // Trim gives back the pages of free slots but not chunks still in use.
  pool.Free(ps[0], size);
  pool.Trim();
  CHECK(pool.Stats().chunks == 2);
  CHECK(pool.Stats().kept_bytes == 0);
  void* again = pool.Allocate(size);  // the discarded slot is reused (fresh pages)
  CHECK(again == ps[0]);
  ps[0] = again;
  for (void* p : ps) pool.Free(p, size);
  pool.Trim();
  CHECK(pool.Stats().chunks == 0);
}

TEST_CASE("the pool keeps at most its cap and never keeps small allocations") {
  const size_t size = GENERATE(size_t{100000}, size_t{1536 * 1024});
  INFO("size " << size);
  BufferPool pool(3 * size);
  std::vector<void*> ps;
  for (int i = 0; i < 5; ++i) ps.push_back(pool.Allocate(size));
  for (void* p : ps) {
    pool.Free(p, size);
    CHECK(pool.Stats().kept_bytes <= 3 * size);
  }
  CHECK(pool.Stats().dropped == 2);
  if (size <= ChunkArena::kMaxSlotBytes) {
    // The chunk emptied with more than half the cap kept: it went back whole.
    CHECK(pool.Stats().chunks == 0);
    CHECK(pool.Stats().kept_bytes == 0);
  } else {
    CHECK(pool.Stats().kept_buffers == 3);
    CHECK(pool.Stats().kept_bytes == 3 * size);
  }
  const uint64_t kept = pool.Stats().kept_buffers;
  void* small = pool.Allocate(BufferPool::kMinPooledBytes - 1);
  pool.Free(small, BufferPool::kMinPooledBytes - 1);
  CHECK(pool.Stats().kept_buffers == kept);
  CHECK(pool.Stats().fresh == 5);  // small allocations are not counted
}

TEST_CASE("allocations from 2 MiB up are 2 MiB aligned") {
  BufferPool pool(0);
  void* p = pool.Allocate(BufferPool::kHugePage + 4096);
  CHECK(reinterpret_cast<uintptr_t>(p) % BufferPool::kHugePage == 0);
  static_cast<char*>(p)[BufferPool::kHugePage + 4095] = 1;  // all of it is usable
  pool.Free(p, BufferPool::kHugePage + 4096);
  CHECK(pool.Stats().dropped == 1);
}

TEST_CASE("block buffers of a pooled size are recycled through the default pool") {
  const std::vector<Token> tokens(16, 1);
  const size_t payload = 192 * 1024;
  BufferPool::Default().Trim();
  const void* first;
  {
    BlockBuffer a = BlockBuffer::Make(tokens, Bytes(payload, 1));
    first = a.payload().data();
  }
  const uint64_t reused = BufferPool::Default().Stats().reused;
  BlockBuffer b = BlockBuffer::Allocate(tokens, payload);
  CHECK(BufferPool::Default().Stats().reused == reused + 1);
  CHECK(b.payload().data() == first);
  CHECK(b.TokensEqual(tokens));
}
