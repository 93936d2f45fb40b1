// `kvtier export` and `kvtier import`: move records between stores through
// an archive (archive.h).
//
// Export reads a consistent read-only view, checks every record and leaves
// out (and reports) the bad ones; records go oldest first, so an import
// rebuilds the same recency order.
//
// Import validates before it writes: a first pass reads the whole archive,
// checks its structure (a truncated or malformed archive is only detectable
// at its end frame) and decodes every record; only then does a second pass
// write the good records in batches. So a malformed archive changes nothing
// - not even a missing store directory is created - at the cost of reading
// the file twice (decoding happens once).

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "archive.h"
#include "cli.h"
#include "format.h"
#include "progress.h"

namespace kvtier::cli {

namespace {

constexpr size_t kBatchRecords = 64;
constexpr uint64_t kBatchBytes = 64ull << 20;

struct ExportArgs {
  std::string dir;
  std::string file;
  std::string ns;
  bool force = false;
};

struct ImportArgs {
  std::string dir;
  std::string file;
};

// Writes the records, checking each; appends the bad ones to *skipped.
Status ExportRecords(BlockStore* store, const std::vector<RecordMeta>& records, bool progress,
                     ArchiveWriter* out, std::vector<std::string>* skipped, uint64_t* bytes) {
  ProgressBar bar("export", records.size(), ProgressBar::Unit::kRecords, progress);
  std::vector<Hash128> keys;
  std::vector<std::string> values;
  std::vector<Status> statuses;
  RecordHeader header;
  for (size_t next = 0; next < records.size();) {
    keys.clear();
    uint64_t batch_bytes = 0;
    while (next < records.size() && keys.size() < kBatchRecords &&
           (keys.empty() || batch_bytes + records[next].stored_bytes <= kBatchBytes)) {
      batch_bytes += records[next].stored_bytes;
      keys.push_back(records[next++].key);
    }
    store->MultiGet(keys, &values, &statuses);
    for (size_t i = 0; i < keys.size(); ++i) {
      Status s = statuses[i];
      if (s.ok()) s = CheckRecord(values[i], keys[i], &header, nullptr);
      if (!s.ok()) {
        skipped->push_back(keys[i].ToHex() + ": " + s.message());
        continue;
      }
      s = out->AddRecord(keys[i], values[i]);
      if (!s.ok()) return s;
      *bytes += values[i].size();
    }
    bar.Set(next);
  }
  return Status::OK();
}

int RunExport(const ExportArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kRead, "export", flags, &store);
  if (!s.ok()) return Fail(s.message());
  NamespaceMap namespaces;
  s = LoadNamespaces(store.get(), &namespaces);
  if (!s.ok()) return Fail(s.message());
  Hash128 only;
  if (!args.ns.empty()) {
    s = ResolveNamespace(namespaces, args.ns, &only);
    if (!s.ok()) return Fail(s.message());
  }
  std::vector<RecordMeta> records;
  s = LoadRecords(store.get(), &records);
  if (!s.ok()) return Fail(s.WithContext("cannot list records").message());
  if (!args.ns.empty())
    std::erase_if(records, [&](const RecordMeta& r) { return r.namespace_fp != only; });
  std::sort(records.begin(), records.end(), [](const RecordMeta& a, const RecordMeta& b) {
    return a.access_seq != b.access_seq ? a.access_seq < b.access_seq : a.key < b.key;
  });

  std::unique_ptr<ArchiveWriter> out;
  s = ArchiveWriter::Create(args.file, args.force, &out);
  if (!s.ok()) return Fail(s.message());
  // The descriptions of the namespaces the records belong to, so the
  // target store's manifest names them too.
  std::set<Hash128> used;
  for (const auto& r : records) used.insert(r.namespace_fp);
  if (!args.ns.empty()) used.insert(only);
  size_t described = 0;
  for (const Hash128& fp : used) {
    auto it = namespaces.find(fp);
    if (it == namespaces.end() || !it->second.ns.Validate().ok() || it->second.ns.Fingerprint() != fp)
      continue;  // known by fingerprint only; the import registers it the same way
    s = out->AddNamespace(it->second.ns);
    if (!s.ok()) return Fail(s.message());
    ++described;
  }
  std::vector<std::string> skipped;
  uint64_t bytes = 0;
  s = ExportRecords(store.get(), records, !flags.no_progress, out.get(), &skipped, &bytes);
  if (s.ok()) s = out->Finish();
  if (!s.ok()) return Fail(s.WithContext("export failed").message());

  size_t exported = records.size() - skipped.size();
  if (flags.json) {
    PrintJson({{"file", args.file},
               {"records", exported},
               {"bytes_stored", bytes},
               {"namespaces", described},
               {"archive_bytes", out->bytes_written()},
               {"skipped", skipped}});
  } else {
    for (const auto& line : skipped) std::printf("skipped   %s\n", line.c_str());
    std::string line = "export: " + Count(exported, "record") + " (" + FormatBytes(bytes) + ") of " +
                       Count(used.size(), "namespace") + " written to " + args.file + " (" +
                       FormatBytes(out->bytes_written()) + ")";
    if (!skipped.empty()) line += "; " + Count(skipped.size(), "bad record") + " skipped";
    std::printf("%s\n", line.c_str());
  }
  return skipped.empty() ? kExitOk : kExitProblems;
}

// What the first pass of an import learned.
struct ImportPlan {
  std::vector<Namespace> namespaces;
  std::vector<bool> good;  // by record frame index
  std::vector<std::string> skipped;
  uint64_t records = 0;
};

std::string FrameWhere(const Frame& f) { return "frame at byte " + std::to_string(f.offset); }

Status CheckArchive(const std::string& path, bool progress, ImportPlan* plan) {
  std::unique_ptr<ArchiveReader> in;
  Status s = ArchiveReader::Open(path, &in);
  if (!s.ok()) return s;
  ProgressBar bar("import: checking", in->file_size(), ProgressBar::Unit::kBytes, progress);
  Frame frame;
  RecordHeader header;
  std::vector<std::byte> payload;
  for (bool done = false; !done;) {
    s = in->Next(&frame, &done);
    if (!s.ok()) return s;
    bar.Set(in->offset());
    if (frame.type == FrameType::kNamespace) {
      Namespace ns;
      s = frame.body_ok ? DecodeNamespace(frame.body, &ns) : Status::Corruption("checksum mismatch");
      if (s.ok()) plan->namespaces.push_back(ns);
      else plan->skipped.push_back("namespace " + FrameWhere(frame) + ": " + s.message());
    } else if (frame.type == FrameType::kRecord) {
      Hash128 key;
      std::string_view record;
      s = frame.body_ok ? SplitRecordBody(frame.body, &key, &record) : Status::Corruption("checksum mismatch");
      if (s.ok()) s = CheckRecord(record, key, &header, &payload);
      plan->good.push_back(s.ok());
      ++plan->records;
      if (!s.ok())
        plan->skipped.push_back("record " + FrameWhere(frame) +
                                (frame.body_ok && frame.body.size() >= 16 ? " (key " + key.ToHex() + ")" : "") +
                                ": " + s.message());
    }
  }
  return Status::OK();
}

struct ImportCounts {
  uint64_t imported = 0;
  uint64_t already_present = 0;
  uint64_t bytes = 0;
};

Status PutBatch(BlockStore* store, const std::vector<std::string>& bodies, ImportCounts* counts) {
  std::vector<std::string_view> records;
  std::vector<Hash128> keys;
  for (const auto& b : bodies) {
    Hash128 key;
    std::string_view record;
    (void)SplitRecordBody(b, &key, &record);  // checked in the first pass
    keys.push_back(key);
    records.push_back(record);
    counts->bytes += record.size();
  }
  std::vector<uint8_t> present;
  Status s = store->Exists(keys, &present);
  if (!s.ok()) return s;
  s = store->Put(records);
  if (!s.ok()) return s;
  counts->imported += records.size();
  for (uint8_t p : present) counts->already_present += p;
  return Status::OK();
}

// Second pass: writes the records the first pass found good.
Status WriteRecords(const std::string& path, const ImportPlan& plan,
                    const std::set<Hash128>& refused, BlockStore* store, bool progress,
                    ImportCounts* counts) {
  std::unique_ptr<ArchiveReader> in;
  Status s = ArchiveReader::Open(path, &in);
  if (!s.ok()) return s;
  ProgressBar bar("import: writing", in->file_size(), ProgressBar::Unit::kBytes, progress);
  std::vector<std::string> batch;
  uint64_t batch_bytes = 0;
  size_t index = 0;
  Frame frame;
  for (bool done = false; !done;) {
    s = in->Next(&frame, &done);
    if (!s.ok()) return s;
    bar.Set(in->offset());
    if (frame.type != FrameType::kRecord) continue;
    if (index >= plan.good.size() || (plan.good[index] && !frame.body_ok))
      return Status::Corruption("the archive changed between the check and the write");
    if (!plan.good[index++]) continue;
    RecordHeader header;
    Hash128 key;
    std::string_view record;
    (void)SplitRecordBody(frame.body, &key, &record);
    if (!ParseRecordHeader(record, &header).ok())
      return Status::Corruption("the archive changed between the check and the write");
    if (refused.count(header.namespace_fp) != 0) continue;
    batch_bytes += frame.body.size();
    batch.push_back(std::move(frame.body));
    if (batch.size() >= kBatchRecords || batch_bytes >= kBatchBytes) {
      s = PutBatch(store, batch, counts);
      if (!s.ok()) return s;
      batch.clear();
      batch_bytes = 0;
    }
  }
  if (!batch.empty()) s = PutBatch(store, batch, counts);
  if (s.ok()) s = store->Flush();
  return s;
}

bool NonEmptyDirectory(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::is_directory(dir, ec) && !std::filesystem::is_empty(dir, ec);
}

int RunImport(const ImportArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  // An existing store is opened first, so a held or foreign directory is
  // refused before the long check. A new one is created only after it.
  if (NonEmptyDirectory(args.dir)) {
    Status s = OpenStore(args.dir, Access::kWrite, "import", flags, &store);
    if (!s.ok()) return Fail(s.message());
  }
  ImportPlan plan;
  Status s = CheckArchive(args.file, !flags.no_progress, &plan);
  if (!s.ok()) return Fail(s.message() + "; nothing was imported");
  if (store == nullptr) {
    s = OpenStore(args.dir, Access::kCreate, "import", flags, &store);
    if (!s.ok()) return Fail(s.message());
  }
  std::set<Hash128> refused;
  for (const Namespace& ns : plan.namespaces) {
    s = store->RegisterNamespace(ns);
    if (s.ok()) continue;
    refused.insert(ns.Fingerprint());
    plan.skipped.push_back("namespace " + ns.Describe() + " refused by the store (its records are skipped): " +
                           s.message());
  }
  ImportCounts counts;
  s = WriteRecords(args.file, plan, refused, store.get(), !flags.no_progress, &counts);
  if (!s.ok())
    return Fail(s.WithContext("import stopped after " + std::to_string(counts.imported) + " records").message());

  uint64_t skipped_records = plan.records - counts.imported;
  size_t registered = plan.namespaces.size() - refused.size();
  if (flags.json) {
    PrintJson({{"file", args.file},
               {"records", counts.imported},
               {"already_present", counts.already_present},
               {"bytes_stored", counts.bytes},
               {"namespaces", registered},
               {"skipped_records", skipped_records},
               {"skipped", plan.skipped}});
  } else {
    for (const auto& line : plan.skipped) std::printf("skipped   %s\n", line.c_str());
    std::printf("import: %s (%s) imported, %llu of them already present; %s registered; %s "
                "skipped\n",
                Count(counts.imported, "record").c_str(), FormatBytes(counts.bytes).c_str(),
                static_cast<unsigned long long>(counts.already_present),
                Count(registered, "namespace").c_str(), Count(skipped_records, "record").c_str());
  }
  return plan.skipped.empty() ? kExitOk : kExitProblems;
}

}  // namespace

void RegisterArchiveCommands(CLI::App* app, CommonFlags* flags, CommandRun* run) {
  auto exp = std::make_shared<ExportArgs>();
  CLI::App* cmd = app->add_subcommand(
      "export", "Write the store's good records to a portable, checksummed archive");
  cmd->add_option("DIR", exp->dir, "Store directory")->required();
  cmd->add_option("FILE", exp->file, "Archive to write")->required();
  cmd->add_option("-n,--namespace", exp->ns,
                  "Only this namespace (fingerprint prefix, model, or model@revision)");
  cmd->add_flag("-f,--force", exp->force, "Overwrite FILE if it exists");
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunExport(*exp, *flags); }; });

  auto imp = std::make_shared<ImportArgs>();
  cmd = app->add_subcommand(
      "import", "Check an archive, then add its good records to the store (created if missing)");
  cmd->add_option("DIR", imp->dir, "Store directory")->required();
  cmd->add_option("FILE", imp->file, "Archive written by `kvtier export`")->required();
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunImport(*imp, *flags); }; });
}

}  // namespace kvtier::cli
