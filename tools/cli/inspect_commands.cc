// `kvtier stats` and `kvtier ls`: what a store holds, summed and listed.

#include <algorithm>
#include <bit>
#include <cstdio>

#include "cli.h"
#include "format.h"

namespace kvtier::cli {

namespace {

struct StatsArgs {
  std::string dir;
  std::string socket;  // a running kvtierd instead of a directory
  bool prometheus = false;
};

struct LsArgs {
  std::string dir;
  std::string ns;
  std::string sort = "recent";
  size_t limit = 0;
};

// Power-of-two buckets of stored record sizes: bucket b holds sizes in
// [2^b, 2^(b+1)).
struct SizeHistogram {
  std::map<int, uint64_t> buckets;

  void Add(uint64_t bytes) { ++buckets[bytes == 0 ? 0 : std::bit_width(bytes) - 1]; }
  static uint64_t Low(int b) { return uint64_t{1} << b; }
  static uint64_t High(int b) { return b >= 63 ? UINT64_MAX : (uint64_t{1} << (b + 1)); }
};

// Adds the namespaces that records name but the manifest does not list,
// with counts summed from the records.
void AddUnlistedNamespaces(const std::vector<RecordMeta>& records, NamespaceMap* namespaces) {
  NamespaceMap unlisted;
  for (const auto& r : records) {
    if (namespaces->count(r.namespace_fp) != 0) continue;
    NamespaceEntry& e = unlisted[r.namespace_fp];
    e.fingerprint = r.namespace_fp;
    ++e.blocks;
    e.raw_bytes += r.raw_bytes;
    e.stored_bytes += r.stored_bytes;
    e.last_use_us = std::max(e.last_use_us, r.last_access_us);
  }
  namespaces->merge(unlisted);
}

void PrintStatsText(const std::string& where, const StoreStats& st, const NamespaceMap& namespaces,
                    const SizeHistogram& histogram) {
  int64_t now = NowMicros();
  std::printf("store          %s%s\n", where.c_str(), st.read_only ? " (read-only view)" : "");
  std::printf("format         %u\n", st.format_version);
  std::printf("records        %llu\n", static_cast<unsigned long long>(st.records));
  std::printf("raw bytes      %s\n", FormatBytes(st.raw_bytes).c_str());
  std::printf("stored bytes   %s (compression %s)\n", FormatBytes(st.stored_bytes).c_str(),
              FormatRatio(st.raw_bytes, st.stored_bytes).c_str());
  std::printf("files on disk  %s\n", FormatBytes(st.files_bytes).c_str());
  if (st.max_bytes == 0) {
    // The store does not record the budget its server opens it with.
    std::printf("budget         %s\n", st.read_only ? "not recorded in the store (set by its server)" : "none");
  } else {
    std::printf("budget         %s (%.0f%% used)\n", FormatBytes(st.max_bytes).c_str(),
                100.0 * static_cast<double>(st.stored_bytes) / static_cast<double>(st.max_bytes));
  }
  std::printf("oldest access  %s (%s)\n", FormatTime(st.oldest_access_us).c_str(),
              FormatAge(st.oldest_access_us, now).c_str());
  std::printf("newest access  %s (%s)\n", FormatTime(st.newest_access_us).c_str(),
              FormatAge(st.newest_access_us, now).c_str());

  std::printf("\nnamespaces (%zu)\n", namespaces.size());
  Table table;
  table.AddColumn("fingerprint");
  table.AddColumn("model");
  table.AddColumn("layout");
  table.AddColumn("blocks", true);
  table.AddColumn("raw", true);
  table.AddColumn("stored", true);
  table.AddColumn("ratio", true);
  table.AddColumn("last use");
  for (const auto& [fp, e] : namespaces) {
    table.AddRow({ShortHex(fp), NamespaceLabel(namespaces, fp),
                  e.ns.layout.num_layers == 0 ? "?" : e.ns.layout.ToString(),
                  std::to_string(e.blocks), FormatBytes(e.raw_bytes), FormatBytes(e.stored_bytes),
                  FormatRatio(e.raw_bytes, e.stored_bytes), FormatAge(e.last_use_us, now)});
  }
  if (!table.empty()) table.Print(stdout, 2);

  std::printf("\nrecord sizes (stored)\n");
  uint64_t most = 0;
  for (const auto& [b, n] : histogram.buckets) most = std::max(most, n);
  if (histogram.buckets.empty()) std::printf("  (no records)\n");
  for (int b = histogram.buckets.empty() ? 1 : histogram.buckets.begin()->first;
       !histogram.buckets.empty() && b <= histogram.buckets.rbegin()->first; ++b) {
    auto it = histogram.buckets.find(b);
    uint64_t n = it == histogram.buckets.end() ? 0 : it->second;
    int bar = most == 0 ? 0 : static_cast<int>((n * 40 + most - 1) / most);
    std::string range = FormatBytes(SizeHistogram::Low(b)) + " - " + FormatBytes(SizeHistogram::High(b));
    std::printf("  %-22s %-40s %llu\n", range.c_str(), std::string(bar, '#').c_str(),
                static_cast<unsigned long long>(n));
  }
}

int RunStats(const StatsArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kRead, "stats", flags, &store);
  if (!s.ok()) return Fail(s.message());
  StoreStats st;
  s = store->GetStats(&st);
  if (!s.ok()) return Fail(s.WithContext("cannot read store statistics").message());
  NamespaceMap namespaces;
  s = LoadNamespaces(store.get(), &namespaces);
  if (!s.ok()) return Fail(s.message());
  std::vector<RecordMeta> records;
  s = LoadRecords(store.get(), &records);
  if (!s.ok()) return Fail(s.WithContext("cannot list records").message());
  AddUnlistedNamespaces(records, &namespaces);
  SizeHistogram histogram;
  for (const auto& r : records) histogram.Add(r.stored_bytes);

  if (!flags.json) {
    PrintStatsText(store->Describe(), st, namespaces, histogram);
    return kExitOk;
  }
  nlohmann::json ns_list = nlohmann::json::array();
  for (const auto& [fp, e] : namespaces) ns_list.push_back(NamespaceJson(e));
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& [b, n] : histogram.buckets)
    hist.push_back({{"min_bytes", SizeHistogram::Low(b)},
                    {"max_bytes", SizeHistogram::High(b)},
                    {"records", n}});
  double ratio = st.stored_bytes == 0 ? 0.0
                                      : static_cast<double>(st.raw_bytes) /
                                            static_cast<double>(st.stored_bytes);
  PrintJson({
      {"store", store->Describe()},
      {"format_version", st.format_version},
      {"read_only", st.read_only},
      {"records", st.records},
      {"bytes_raw", st.raw_bytes},
      {"bytes_stored", st.stored_bytes},
      {"compression_ratio", ratio},
      {"files_bytes", st.files_bytes},
      {"max_bytes", st.max_bytes},
      {"oldest_access_us", st.oldest_access_us},
      {"newest_access_us", st.newest_access_us},
      {"namespaces", ns_list},
      {"size_histogram", hist},
  });
  return kExitOk;
}

void SortRecords(std::string_view order, std::vector<RecordMeta>* records) {
  auto by_key = [](const RecordMeta& a, const RecordMeta& b) { return a.key < b.key; };
  auto cmp = [&](const RecordMeta& a, const RecordMeta& b) {
    if (order == "recent" && a.access_seq != b.access_seq) return a.access_seq > b.access_seq;
    if (order == "size" && a.stored_bytes != b.stored_bytes) return a.stored_bytes > b.stored_bytes;
    if (order == "depth" && a.depth != b.depth) return a.depth < b.depth;
    return by_key(a, b);
  };
  std::sort(records->begin(), records->end(), cmp);
}

int RunLs(const LsArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kRead, "ls", flags, &store);
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
  SortRecords(args.sort, &records);
  size_t total = records.size();
  uint64_t total_stored = 0;
  for (const auto& r : records) total_stored += r.stored_bytes;
  if (args.limit != 0 && records.size() > args.limit) records.resize(args.limit);

  if (flags.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : records) list.push_back(RecordJson(r));
    PrintJson({{"total", total}, {"shown", records.size()}, {"records", list}});
    return kExitOk;
  }
  int64_t now = NowMicros();
  Table table;
  table.AddColumn("key");
  table.AddColumn("namespace");
  table.AddColumn("depth", true);
  table.AddColumn("tokens", true);
  table.AddColumn("raw", true);
  table.AddColumn("stored", true);
  table.AddColumn("codec");
  table.AddColumn("last access");
  for (const auto& r : records) {
    table.AddRow({r.key.ToHex(), NamespaceLabel(namespaces, r.namespace_fp),
                  std::to_string(r.depth),
                  std::to_string((uint64_t{r.depth} + 1) * r.num_tokens), FormatBytes(r.raw_bytes),
                  FormatBytes(r.stored_bytes), CodecName(r.flags),
                  FormatTime(r.last_access_us) + " (" + FormatAge(r.last_access_us, now) + ")"});
  }
  if (!table.empty()) table.Print(stdout);
  std::printf("%s, %s stored", Count(total, "record").c_str(), FormatBytes(total_stored).c_str());
  if (records.size() < total) std::printf(" (showing %zu; --limit 0 shows all)", records.size());
  std::printf("\n");
  return kExitOk;
}

}  // namespace

void RegisterInspectCommands(CLI::App* app, CommonFlags* flags, CommandRun* run) {
  auto stats = std::make_shared<StatsArgs>();
  CLI::App* cmd = app->add_subcommand(
      "stats", "Format, namespaces, sizes, budget, record-size histogram and access times");
  cmd->add_option("DIR", stats->dir, "Store directory (or --socket)");
  auto* socket = cmd->add_option("--socket", stats->socket,
                                 "A running kvtierd's counters instead (per client and total)");
  cmd->add_flag("--prometheus", stats->prometheus, "With --socket: Prometheus text format")->needs(socket);
  AddCommonFlags(cmd, flags);
  cmd->callback([=] {
    *run = [=] {
      if (!stats->socket.empty() && !stats->dir.empty())
        return Fail("give a store directory or --socket, not both");
      if (!stats->socket.empty()) return RunDaemonStats(stats->socket, stats->prometheus, *flags);
      if (stats->dir.empty()) return Fail("stats needs a store directory (or --socket PATH of a kvtierd)");
      return RunStats(*stats, *flags);
    };
  });

  auto ls = std::make_shared<LsArgs>();
  cmd = app->add_subcommand("ls", "List records: key, depth, tokens covered, sizes, codec, last access");
  cmd->add_option("DIR", ls->dir, "Store directory")->required();
  cmd->add_option("-n,--namespace", ls->ns,
                  "Only this namespace (fingerprint prefix, model, or model@revision)");
  cmd->add_option("--sort", ls->sort, "Order: recent (newest first), size (largest first), "
                                      "depth (chain heads first) or key")
      ->check(CLI::IsMember({"recent", "size", "depth", "key"}))
      ->capture_default_str();
  cmd->add_option("--limit", ls->limit, "Show at most K records (0 = all)")->capture_default_str();
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunLs(*ls, *flags); }; });
}

}  // namespace kvtier::cli
