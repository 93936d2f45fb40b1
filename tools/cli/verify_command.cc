// `kvtier verify`: decode and check every record; report corrupt records
// (header, checksum, key, metadata) and orphans (a parent that is missing,
// corrupt or itself orphaned: a chain without its head can never be
// served). `--repair` deletes both kinds.

#include <algorithm>
#include <cstdio>
#include <set>

#include "cli.h"
#include "format.h"
#include "progress.h"

namespace kvtier::cli {

namespace {

constexpr size_t kBatchRecords = 64;
constexpr uint64_t kBatchBytes = 64ull << 20;
constexpr size_t kDeleteBatch = 1024;

struct VerifyArgs {
  std::string dir;
  bool repair = false;
};

struct Problem {
  Hash128 key;
  std::string reason;
};

// Why the record disagrees with the metadata the store keeps for it, or "".
std::string MetaMismatch(const RecordMeta& meta, const RecordHeader& h) {
  if (meta.depth != h.depth)
    return "metadata says depth " + std::to_string(meta.depth) + ", record says " + std::to_string(h.depth);
  if (meta.parent != h.parent) return "metadata and record name different parents";
  if (meta.namespace_fp != h.namespace_fp) return "metadata and record name different namespaces";
  return "";
}

// Reads and checks every record; appends the corrupt ones.
Status CheckAll(BlockStore* store, const std::vector<RecordMeta>& records, bool progress,
                std::vector<Problem>* corrupt) {
  ProgressBar bar("verify", records.size(), ProgressBar::Unit::kRecords, progress);
  std::vector<std::string> values;
  std::vector<Status> statuses;
  std::vector<Hash128> keys;
  size_t next = 0;
  while (next < records.size()) {
    keys.clear();
    uint64_t bytes = 0;
    size_t first = next;
    while (next < records.size() && keys.size() < kBatchRecords &&
           (keys.empty() || bytes + records[next].stored_bytes <= kBatchBytes)) {
      bytes += records[next].stored_bytes;
      keys.push_back(records[next++].key);
    }
    store->MultiGet(keys, &values, &statuses);
    for (size_t i = 0; i < keys.size(); ++i) {
      const RecordMeta& meta = records[first + i];
      if (statuses[i].IsNotFound()) {
        corrupt->push_back({meta.key, "listed, but no record is stored under its key"});
        continue;
      }
      if (!statuses[i].ok()) return statuses[i].WithContext("cannot read record " + meta.key.ToHex());
      RecordHeader header;
      Status s = CheckRecord(values[i], meta.key, &header, nullptr);
      std::string mismatch = s.ok() ? MetaMismatch(meta, header) : s.message();
      if (!mismatch.empty()) corrupt->push_back({meta.key, mismatch});
    }
    bar.Set(next);
  }
  return Status::OK();
}

// Records whose chain to the namespace is broken, parents before children.
std::vector<Problem> FindOrphans(std::vector<RecordMeta> records, const std::vector<Problem>& corrupt) {
  std::sort(records.begin(), records.end(), [](const RecordMeta& a, const RecordMeta& b) {
    return a.depth != b.depth ? a.depth < b.depth : a.key < b.key;
  });
  std::set<Hash128> present, bad;
  for (const auto& r : records) present.insert(r.key);
  for (const auto& p : corrupt) bad.insert(p.key);
  std::set<Hash128> corrupt_keys = bad;
  std::vector<Problem> orphans;
  for (const auto& r : records) {
    if (r.depth == 0 || corrupt_keys.count(r.key) != 0) continue;
    std::string why;
    if (present.count(r.parent) == 0)
      why = "parent " + ShortHex(r.parent) + " is missing";
    else if (corrupt_keys.count(r.parent) != 0)
      why = "parent " + ShortHex(r.parent) + " is corrupt";
    else if (bad.count(r.parent) != 0)
      why = "parent " + ShortHex(r.parent) + " is orphaned";
    if (why.empty()) continue;
    bad.insert(r.key);
    orphans.push_back({r.key, why});
  }
  return orphans;
}

Status DeleteAll(BlockStore* store, const std::vector<Problem>& a, const std::vector<Problem>& b) {
  std::vector<Hash128> keys;
  for (const auto* list : {&a, &b})
    for (const auto& p : *list) keys.push_back(p.key);
  for (size_t i = 0; i < keys.size(); i += kDeleteBatch) {
    size_t n = std::min(kDeleteBatch, keys.size() - i);
    Status s = store->Delete(std::span<const Hash128>(keys.data() + i, n));
    if (!s.ok()) return s;
  }
  return store->Flush();
}

int RunVerify(const VerifyArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, args.repair ? Access::kWrite : Access::kRead,
                       args.repair ? "verify --repair" : "verify", flags, &store);
  if (!s.ok()) return Fail(s.message());
  std::vector<RecordMeta> records;
  s = LoadRecords(store.get(), &records);
  if (!s.ok()) return Fail(s.WithContext("cannot list records").message());

  std::vector<Problem> corrupt;
  s = CheckAll(store.get(), records, !flags.no_progress, &corrupt);
  if (!s.ok()) return Fail(s.message());
  std::vector<Problem> orphans = FindOrphans(records, corrupt);
  size_t problems = corrupt.size() + orphans.size();

  Status repaired;
  if (args.repair && problems > 0) repaired = DeleteAll(store.get(), corrupt, orphans);

  std::string summary = "verify: " + Count(records.size(), "record") + " checked, ";
  if (problems == 0) {
    summary += "all ok";
  } else {
    summary += std::to_string(corrupt.size()) + " corrupt, " + std::to_string(orphans.size()) + " orphaned";
    if (args.repair && repaired.ok()) summary += "; deleted " + Count(problems, "record");
    if (!args.repair) summary += " (`kvtier verify --repair` deletes them)";
  }

  if (flags.json) {
    auto list = [](const std::vector<Problem>& ps) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& p : ps) out.push_back({{"key", p.key.ToHex()}, {"reason", p.reason}});
      return out;
    };
    PrintJson({{"records_checked", records.size()},
               {"corrupt", list(corrupt)},
               {"orphaned", list(orphans)},
               {"problems", problems},
               {"repair", args.repair},
               {"deleted", args.repair && repaired.ok() ? problems : 0},
               {"ok", problems == 0}});
    std::fprintf(stderr, "%s\n", summary.c_str());
  } else {
    for (const auto& p : corrupt) std::printf("corrupt   %s  %s\n", p.key.ToHex().c_str(), p.reason.c_str());
    for (const auto& p : orphans) std::printf("orphaned  %s  %s\n", p.key.ToHex().c_str(), p.reason.c_str());
    std::printf("%s\n", summary.c_str());
  }
  if (!repaired.ok()) return Fail(repaired.WithContext("repair failed").message());
  if (problems == 0 || args.repair) return kExitOk;
  return kExitProblems;
}

}  // namespace

void RegisterVerifyCommand(CLI::App* app, CommonFlags* flags, CommandRun* run) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app->add_subcommand(
      "verify", "Decode and check every record; report corrupt and orphaned records");
  cmd->add_option("DIR", args->dir, "Store directory")->required();
  cmd->add_flag("--repair", args->repair,
                "Delete the corrupt and orphaned records (needs the write lock)");
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunVerify(*args, *flags); }; });
}

}  // namespace kvtier::cli
