// `kvtier trim` and `kvtier compact`: the write commands that shrink a
// store. Both take the write lock, so they refuse a store another process
// holds.

#include <algorithm>
#include <cstdio>

#include "cli.h"
#include "format.h"
#include "progress.h"

namespace kvtier::cli {

namespace {

// On a terminal a trim runs in this many steps so the bar can move; each
// step is the same call with a nearer target, so the result is the same as
// one call (LRU order and "older than" are monotone).
constexpr int kTrimSteps = 50;
constexpr int kOlderThanSteps = 10;
constexpr size_t kDropBatch = 256;

struct TrimArgs {
  std::string dir;
  std::string max_bytes;
  std::string older_than;
  std::string ns;
};

struct CompactArgs {
  std::string dir;
};

void Accumulate(const TrimResult& step, TrimResult* total) {
  total->records_deleted += step.records_deleted;
  total->bytes_freed += step.bytes_freed;
  total->orphans_collected += step.orphans_collected;
}

Status TrimBytes(BlockStore* store, uint64_t target, const StoreStats& before, bool progress,
                 TrimResult* result) {
  uint64_t excess = before.stored_bytes > target ? before.stored_bytes - target : 0;
  ProgressBar bar("trim", excess, ProgressBar::Unit::kBytes, progress && excess > 0);
  int steps = bar.drawing() ? kTrimSteps : 1;
  for (int i = 1; i <= steps; ++i) {
    uint64_t goal = before.stored_bytes - excess / static_cast<uint64_t>(steps) * static_cast<uint64_t>(i);
    if (i == steps) goal = target;
    TrimResult step;
    Status s = store->TrimToBytes(goal, &step);
    if (!s.ok()) return s;
    Accumulate(step, result);
    bar.Set(std::min(result->bytes_freed, excess));
  }
  return Status::OK();
}

Status TrimOlder(BlockStore* store, int64_t cutoff_us, bool progress, TrimResult* result) {
  // On a terminal: steps at quantiles of the old records' last use, fewer
  // than for a byte budget since each TrimOlderThan() scans the metadata.
  // The bar counts the bytes of the records older than the cutoff (their
  // descendants come on top, so it is clamped).
  std::vector<int64_t> goals;
  uint64_t expected = 0;
  if (ProgressVisible(progress)) {
    std::vector<RecordMeta> records;
    Status s = LoadRecords(store, &records);
    if (!s.ok()) return s;
    std::vector<int64_t> times;
    for (const auto& r : records) {
      if (r.last_access_us >= cutoff_us) continue;
      expected += r.stored_bytes;
      times.push_back(r.last_access_us);
    }
    std::sort(times.begin(), times.end());
    for (int i = 1; i < kOlderThanSteps && !times.empty(); ++i)
      goals.push_back(times[times.size() * i / kOlderThanSteps]);
  }
  goals.push_back(cutoff_us);
  ProgressBar bar("trim", expected, ProgressBar::Unit::kBytes, expected > 0);
  for (int64_t goal : goals) {
    TrimResult step;
    Status s = store->TrimOlderThan(goal, &step);
    if (!s.ok()) return s;
    Accumulate(step, result);
    bar.Set(std::min(result->bytes_freed, expected));
  }
  return Status::OK();
}

Status DropWholeNamespace(BlockStore* store, const Hash128& fp, bool progress,
                          TrimResult* result) {
  if (ProgressVisible(progress)) {
    // Delete in batches so the bar can move; DropNamespace below finishes
    // the job (and forgets the namespace).
    std::vector<RecordMeta> records;
    Status s = LoadRecords(store, &records);
    if (!s.ok()) return s;
    std::erase_if(records, [&](const RecordMeta& r) { return r.namespace_fp != fp; });
    ProgressBar bar("trim", records.size(), ProgressBar::Unit::kRecords, true);
    std::vector<Hash128> keys;
    for (size_t i = 0; i < records.size(); i += kDropBatch) {
      size_t n = std::min(kDropBatch, records.size() - i);
      keys.clear();
      for (size_t j = i; j < i + n; ++j) {
        keys.push_back(records[j].key);
        result->bytes_freed += records[j].stored_bytes;
      }
      s = store->Delete(keys);
      if (!s.ok()) return s;
      result->records_deleted += n;
      bar.Set(i + n);
    }
  }
  TrimResult step;
  Status s = store->DropNamespace(fp, &step);
  if (!s.ok()) return s;
  Accumulate(step, result);
  return Status::OK();
}

int RunTrim(const TrimArgs& args, const CommonFlags& flags) {
  int modes = !args.max_bytes.empty() + !args.older_than.empty() + !args.ns.empty();
  if (modes != 1) return Fail("trim needs exactly one of --max-bytes, --older-than, --namespace");
  uint64_t max_bytes = 0;
  int64_t age_us = 0;
  if (!args.max_bytes.empty() && !ParseBytes(args.max_bytes, &max_bytes))
    return Fail("--max-bytes: '" + args.max_bytes + "' is not a size (e.g. 500M, 20GiB, 1048576)");
  if (!args.older_than.empty() && !ParseDuration(args.older_than, &age_us))
    return Fail("--older-than: '" + args.older_than + "' is not a duration (e.g. 90s, 30m, 12h, 7d, 2w)");

  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kWrite, "trim", flags, &store);
  if (!s.ok()) return Fail(s.message());
  StoreStats before, after;
  s = store->GetStats(&before);
  if (!s.ok()) return Fail(s.WithContext("cannot read store statistics").message());

  TrimResult result;
  bool progress = !flags.no_progress;
  std::string mode;
  if (!args.max_bytes.empty()) {
    mode = "max-bytes";
    s = TrimBytes(store.get(), max_bytes, before, progress, &result);
  } else if (!args.older_than.empty()) {
    mode = "older-than";
    s = TrimOlder(store.get(), NowMicros() - age_us, progress, &result);
  } else {
    mode = "namespace";
    NamespaceMap namespaces;
    Hash128 fp;
    s = LoadNamespaces(store.get(), &namespaces);
    if (s.ok()) s = ResolveNamespace(namespaces, args.ns, &fp);
    if (!s.ok()) return Fail(s.message());
    s = DropWholeNamespace(store.get(), fp, progress, &result);
  }
  if (s.ok()) s = store->Flush();
  if (!s.ok()) return Fail(s.WithContext("trim failed").message());
  s = store->GetStats(&after);
  if (!s.ok()) return Fail(s.WithContext("cannot read store statistics").message());

  if (flags.json) {
    PrintJson({{"mode", mode},
               {"records_deleted", result.records_deleted},
               {"bytes_freed", result.bytes_freed},
               {"orphans_collected", result.orphans_collected},
               {"records", after.records},
               {"bytes_stored", after.stored_bytes}});
  } else {
    std::printf("trim: deleted %s (%llu of them orphans), freed %s; the store now holds %s, %s "
                "stored\n",
                Count(result.records_deleted, "record").c_str(),
                static_cast<unsigned long long>(result.orphans_collected),
                FormatBytes(result.bytes_freed).c_str(), Count(after.records, "record").c_str(),
                FormatBytes(after.stored_bytes).c_str());
  }
  return kExitOk;
}

int RunCompact(const CompactArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kWrite, "compact", flags, &store);
  if (!s.ok()) return Fail(s.message());
  CompactResult result;
  s = store->Compact(&result);
  if (!s.ok()) return Fail(s.WithContext("compaction failed").message());
  if (flags.json) {
    PrintJson({{"files_bytes_before", result.files_bytes_before},
               {"files_bytes_after", result.files_bytes_after}});
    return kExitOk;
  }
  uint64_t b = result.files_bytes_before, a = result.files_bytes_after;
  std::printf("compact: files %s -> %s (%s %s)\n", FormatBytes(b).c_str(), FormatBytes(a).c_str(),
              FormatBytes(b > a ? b - a : a - b).c_str(), b >= a ? "reclaimed" : "grown");
  return kExitOk;
}

}  // namespace

void RegisterMaintenanceCommands(CLI::App* app, CommonFlags* flags, CommandRun* run) {
  auto trim = std::make_shared<TrimArgs>();
  CLI::App* cmd = app->add_subcommand(
      "trim", "Evict down to a budget, drop old records, or drop a whole namespace");
  cmd->add_option("DIR", trim->dir, "Store directory")->required();
  auto* by_size = cmd->add_option("--max-bytes", trim->max_bytes,
                                  "Evict least recently used records until at most B stored bytes "
                                  "remain (500M, 20GiB, ...)");
  auto* by_age = cmd->add_option("--older-than", trim->older_than,
                                 "Delete records last used more than T ago (90s, 12h, 7d, 2w), "
                                 "and their descendants");
  auto* by_ns = cmd->add_option("-n,--namespace", trim->ns,
                                "Delete every record of this namespace (fingerprint prefix, model, "
                                "or model@revision) and forget it");
  by_size->excludes(by_age)->excludes(by_ns);
  by_age->excludes(by_ns);
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunTrim(*trim, *flags); }; });

  auto compact = std::make_shared<CompactArgs>();
  cmd = app->add_subcommand("compact", "Compact the store's files; prints space before and after");
  cmd->add_option("DIR", compact->dir, "Store directory")->required();
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunCompact(*compact, *flags); }; });
}

}  // namespace kvtier::cli
