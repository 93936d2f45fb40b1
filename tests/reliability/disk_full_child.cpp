// disk_full_child: the child process of tests/disk_full_test.cpp. It
// mounts a small tmpfs in a mount namespace of its own (as root, or in a
// user namespace; the mount disappears with the process) and runs two
// phases on it:
//   budget  a store whose byte budget is well under the file system's size
//           takes many times that size in records: the budget evicts, the
//           disk never fills, nothing fails;
//   full    a store with no budget of its own fills the file system: the
//           cache keeps serving and evicting in memory while the disk tier
//           refuses writes, then resumes once space is freed (a ballast
//           file removed); every record stored before the disk filled is
//           still there and intact.
// Prints one line per figure and "FAILED: ..." per failed check.
//
//   disk_full_child [TMPFS_MIB]   exit 0: all checks held, 1: a check failed,
//                                 77: no tmpfs could be mounted (skipped)
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "reliability/reliability_util.h"

using namespace kvtier;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what.c_str());
    ++failures;
  }
}

bool WriteFile(const char* path, const std::string& text) {
  const int fd = open(path, O_WRONLY);
  if (fd < 0) return false;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// A private mount namespace with a tmpfs of `mib` MiB at a fresh directory.
bool MountTmpfs(uint64_t mib, std::string* root, std::string* why) {
  if (geteuid() != 0) {
    const uid_t uid = getuid();
    const gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
      *why = std::string("unshare(user+mount namespace): ") + std::strerror(errno);
      return false;
    }
    WriteFile("/proc/self/setgroups", "deny");
    if (!WriteFile("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
        !WriteFile("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
      *why = "cannot map the user into the new user namespace";
      return false;
    }
  } else if (unshare(CLONE_NEWNS) != 0) {
    *why = std::string("unshare(mount namespace): ") + std::strerror(errno);
    return false;
  }
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    *why = std::string("making mounts private: ") + std::strerror(errno);
    return false;
  }
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/kvtier-tmpfs-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    *why = std::string("mkdtemp: ") + std::strerror(errno);
    return false;
  }
  const std::string options = "size=" + std::to_string(mib) + "m,mode=0700";
  if (mount("tmpfs", tmpl.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    *why = std::string("mount -t tmpfs: ") + std::strerror(errno);
    rmdir(tmpl.c_str());
    return false;
  }
  *root = tmpl;
  return true;
}

uint64_t UsedBytes(const std::string& path) {
  struct statvfs v;
  if (statvfs(path.c_str(), &v) != 0) return 0;
  return (v.f_blocks - v.f_bfree) * v.f_frsize;
}

Namespace DiskNamespace() {
  BlockLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 2;
  l.head_dim = 64;
  l.block_size = 8;
  l.dtype = DType::kF16;  // 8 KiB blocks, ~6 KiB records
  return test::TestNamespace(l, "disk-full-model");
}

constexpr size_t kBlocks = 4;

std::vector<Token> Prompt(uint64_t p) { return test::Tokens(kBlocks * 8, 4242000 + p); }

CacheOptions Options(const std::string& dir, uint64_t max_bytes) {
  CacheOptions o;
  o.ns = DiskNamespace();
  o.memory_bytes = 64 * o.ns.layout.block_bytes();
  o.spill_queue_bytes = 32 * o.ns.layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = max_bytes;
  o.log = [](std::string_view) {};
  o.store_options.log = o.log;
  return o;
}

Status Insert(Cache* cache, uint64_t p) {
  const std::vector<Token> t = Prompt(p);
  auto blocks = test::KeyedBlocks(cache->ns(), t, 0, kBlocks);
  return cache->InsertBlocks(t, 0, test::Spans(blocks));
}

void BudgetPhase(const std::string& root, uint64_t fs_bytes) {
  const std::string dir = root + "/budget";
  const uint64_t budget = fs_bytes / 8;
  std::unique_ptr<Cache> cache;
  Status s = Cache::Open(Options(dir, budget), &cache);
  Check(s.ok(), "budget phase: open: " + s.ToString());
  if (!s.ok()) return;
  uint64_t peak = 0, p = 0;
  const uint64_t block = cache->layout().block_bytes();
  for (; p * kBlocks * block < 4 * fs_bytes; ++p) {  // 4x the file system, raw
    s = Insert(cache.get(), p);
    if (!s.ok()) break;
    if (p % 32 == 0) peak = std::max(peak, UsedBytes(root));
  }
  Check(s.ok(), "budget phase: insert: " + s.ToString());
  s = cache->Flush();
  Check(s.ok(), "budget phase: flush: " + s.ToString());
  peak = std::max(peak, UsedBytes(root));
  const CacheStats st = cache->Stats();
  StoreStats ss;
  (void)cache->store()->GetStats(&ss);
  Check(st.store_errors == 0, "budget phase: store errors: " + std::to_string(st.store_errors));
  Check(st.spill_dropped == 0, "budget phase: blocks dropped: " + std::to_string(st.spill_dropped));
  Check(ss.stored_bytes <= budget, "budget phase: the disk tier holds more than its budget");
  Check(ss.evicted_records > 0, "budget phase: the budget never evicted");
  Check(peak < fs_bytes, "budget phase: the file system filled");
  std::printf("budget phase: %llu MiB of records written (%llu blocks) into a %llu MiB budget on a "
              "%llu MiB tmpfs: peak file-system use %.1f MiB, the disk tier holds %.1f MiB in %llu "
              "records, %llu records evicted by the budget, %llu store errors\n",
              static_cast<unsigned long long>(st.bytes_written_stored / kMiB),
              static_cast<unsigned long long>(st.spills), static_cast<unsigned long long>(budget / kMiB),
              static_cast<unsigned long long>(fs_bytes / kMiB), static_cast<double>(peak) / kMiB,
              static_cast<double>(ss.stored_bytes) / kMiB, static_cast<unsigned long long>(ss.records),
              static_cast<unsigned long long>(ss.evicted_records),
              static_cast<unsigned long long>(st.store_errors));
  (void)cache->Close();
  cache.reset();
  std::filesystem::remove_all(dir);
}

void FullPhase(const std::string& root, uint64_t fs_bytes) {
  const std::string dir = root + "/full";
  const std::string ballast = root + "/ballast";
  // Space an operator can free later: half the disk. Resuming needs about
  // one records memtable free (64 MiB at this budget): reopening replays
  // the WAL and flushes what it replayed into a blob file.
  const uint64_t ballast_bytes = fs_bytes / 2;
  {
    std::FILE* f = std::fopen(ballast.c_str(), "w");
    std::string mib(kMiB, 'b');
    for (uint64_t i = 0; f != nullptr && i < ballast_bytes / kMiB; ++i) std::fwrite(mib.data(), 1, mib.size(), f);
    if (f != nullptr) std::fclose(f);
  }
  const CacheOptions o = Options(dir, 1ull << 30);  // a budget larger than the disk
  std::unique_ptr<Cache> cache;
  Status s = Cache::Open(o, &cache);
  Check(s.ok(), "full phase: open: " + s.ToString());
  if (!s.ok()) return;
  constexpr uint64_t kBefore = 64;
  for (uint64_t p = 0; p < kBefore; ++p) Check(Insert(cache.get(), p).ok(), "full phase: insert before");
  s = cache->Flush();
  Check(s.ok(), "full phase: flush before the disk fills: " + s.ToString());

  // Fill the disk, then keep going a while: the cache must keep working.
  uint64_t p = kBefore, wrong = 0, short_hits = 0, full_at = 0, max_queue = 0;
  const uint64_t limit = kBefore + 4 * fs_bytes / (kBlocks * o.ns.layout.block_bytes());
  for (; p < limit; ++p) {
    s = Insert(cache.get(), p);
    if (!s.ok()) break;
    const std::vector<Token> t = Prompt(p);
    Lease l = cache->Lookup(t);  // just inserted: resident, and exact
    if (!test::LeaseExact(o.ns, l, t)) ++wrong;
    if (l.num_blocks() != kBlocks) ++short_hits;
    l.Release();
    const CacheStats st = cache->Stats();
    max_queue = std::max(max_queue, st.queue_bytes);
    if (full_at == 0 && st.store_errors > 0) full_at = p;
    if (full_at != 0 && p > full_at + 200) break;
  }
  Check(s.ok(), "full phase: insert while the disk is full: " + s.ToString());
  Check(full_at != 0, "full phase: the disk never filled");
  const uint64_t used_when_full = UsedBytes(root);
  const Status during = cache->Flush();
  const CacheStats in_full = cache->Stats();
  Check(!during.ok(), "full phase: a flush on a full disk reported success");
  Check(wrong == 0, "full phase: wrong blocks served: " + std::to_string(wrong));
  Check(short_hits == 0, "full phase: resident blocks not served: " + std::to_string(short_hits));
  Check(max_queue <= o.spill_queue_bytes, "full phase: the spill queue outgrew its budget");
  Check(in_full.spill_dropped > 0, "full phase: no block was given up while the disk was full");
  Check(in_full.memory_bytes <= in_full.memory_budget, "full phase: memory over budget");

  // Space comes back: the disk tier resumes within a bounded wait.
  std::filesystem::remove(ballast);
  const auto freed = std::chrono::steady_clock::now();
  bool recovered = false;
  for (int attempt = 0; attempt < 200 && !recovered; ++attempt) {
    recovered = cache->Flush().ok();
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto recovery_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - freed)
                               .count();
  Check(recovered, "full phase: no successful flush within 10 s of freeing space");
  if (!recovered) {  // what is on the disk, for the report
    std::error_code ec;
    std::string files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      std::error_code size_ec;
      files += " " + e.path().filename().string() + "=" + std::to_string(e.file_size(size_ec) / 1024) + "K";
    }
    std::printf("full phase: store files after the failed recovery (%.1f MiB used):%s\n",
                static_cast<double>(UsedBytes(root)) / kMiB, files.c_str());
  }
  const uint64_t after_first = p + 1;
  for (uint64_t q = after_first; q < after_first + 16; ++q) Check(Insert(cache.get(), q).ok(), "insert after");
  s = cache->Flush();
  Check(s.ok(), "full phase: flush after space came back: " + s.ToString());
  const CacheStats end = cache->Stats();
  s = cache->Close();
  Check(s.ok(), "full phase: close: " + s.ToString());
  cache.reset();

  // Reopen: everything stored before the disk filled, and after it came
  // back, is there and intact.
  s = Cache::Open(o, &cache);
  Check(s.ok(), "full phase: reopen: " + s.ToString());
  if (!s.ok()) return;
  const test::StoreAudit audit = test::AuditStore(cache->store(), o.ns);
  Check(audit.clean(), "full phase: store audit: " + audit.first_problem);
  uint64_t lost = 0;
  auto expect_present = [&](uint64_t q) {
    const std::vector<Hash128> h = test::Chain(o.ns, Prompt(q));
    std::vector<uint8_t> present;
    if (!cache->store()->Exists(h, &present).ok()) present.assign(h.size(), 0);
    for (uint8_t x : present) lost += x == 0;
  };
  for (uint64_t q = 0; q < kBefore; ++q) expect_present(q);
  for (uint64_t q = after_first; q < after_first + 16; ++q) expect_present(q);
  Check(lost == 0, "full phase: stored blocks lost: " + std::to_string(lost));
  std::printf(
      "full phase: %llu MiB tmpfs (with a %llu MiB ballast) filled after %llu blocks spilled "
      "(%.1f MiB used); %llu more prompts inserted and served from memory while full; %llu "
      "store errors, %llu blocks given up (spill_dropped), spill queue peak %llu of %llu bytes; "
      "resumed %lld ms after space was freed; %llu records intact on reopen, %llu stored blocks "
      "lost (must be 0), %llu wrong blocks (must be 0)\n",
      static_cast<unsigned long long>(fs_bytes / kMiB),
      static_cast<unsigned long long>(ballast_bytes / kMiB),
      static_cast<unsigned long long>(in_full.spills), static_cast<double>(used_when_full) / kMiB,
      static_cast<unsigned long long>(p - full_at),
      static_cast<unsigned long long>(in_full.store_errors),
      static_cast<unsigned long long>(end.spill_dropped), static_cast<unsigned long long>(max_queue),
      static_cast<unsigned long long>(o.spill_queue_bytes), static_cast<long long>(recovery_ms),
      static_cast<unsigned long long>(audit.verified), static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(wrong));
  (void)cache->Close();
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 128;
  std::string root, why;
  if (!MountTmpfs(mib, &root, &why)) {
    std::printf("skip: cannot mount a tmpfs (%s)\n", why.c_str());
    return 77;
  }
  const uint64_t fs_bytes = mib * kMiB;
  BudgetPhase(root, fs_bytes);
  FullPhase(root, fs_bytes);
  std::fflush(stdout);
  umount2(root.c_str(), MNT_DETACH);
  rmdir(root.c_str());
  return failures == 0 ? 0 : 1;
}
