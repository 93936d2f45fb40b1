// Shared helpers for kvtier's tests: temp directories, deterministic
// namespaces, tokens and payloads.
#ifndef KVTIER_TESTS_TEST_UTIL_H_
#define KVTIER_TESTS_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "kvtier/layout.h"

namespace kvtier::test {

// A fresh directory under $TMPDIR, removed with everything in it on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A small valid layout: 2 layers x 2 kv heads x 8 head_dim, block_size 4.
BlockLayout SmallLayout(DType dtype = DType::kF16, uint32_t block_size = 4);

// A namespace "test-model"@"rev1" over `layout`.
Namespace TestNamespace(const BlockLayout& layout, const std::string& model = "test-model");

// `n` tokens derived from `seed` (distinct seeds give distinct prompts).
std::vector<uint32_t> Tokens(size_t n, uint64_t seed);

// A block payload for `layout` whose bytes are a deterministic function of
// `seed`, shaped like real K/V (per-channel scales, small mantissa noise)
// so it compresses like real data.
std::vector<std::byte> Payload(const BlockLayout& layout, uint64_t seed);

}  // namespace kvtier::test

#endif  // KVTIER_TESTS_TEST_UTIL_H_
