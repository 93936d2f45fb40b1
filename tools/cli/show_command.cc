// `kvtier show`: one record in full - header, tokens, parent chain back to
// the namespace, and per-layer K/V value statistics of its payload.

#include <cstdio>

#include "cli.h"
#include "format.h"
#include "value_stats.h"

namespace kvtier::cli {

namespace {

struct ShowArgs {
  std::string dir;
  std::string key;
  bool tokens = false;
  bool stats = false;
};

struct ChainLink {
  uint32_t depth;
  Hash128 key;
  bool present;
};

// From the record's parent back to depth 0; stops at the first absent link.
std::vector<ChainLink> ParentChain(BlockStore* store, const RecordHeader& header) {
  std::vector<ChainLink> chain;
  Hash128 key = header.parent;
  for (uint32_t depth = header.depth; depth-- > 0;) {
    RecordMeta meta;
    bool present = store->GetMeta(key, &meta).ok();
    chain.push_back({depth, key, present});
    if (!present) break;
    key = meta.parent;
  }
  return chain;
}

nlohmann::json StatsJson(const ValueStats& s) {
  return {{"min", s.min},   {"max", s.max},         {"mean", s.mean()},
          {"abs_max", s.abs_max}, {"nan", s.nan}, {"inf", s.inf}};
}

struct LayerStats {
  ValueStats k, v;
};

std::vector<LayerStats> ComputeLayerStats(const RecordHeader& h, const std::vector<std::byte>& payload) {
  std::vector<LayerStats> out;
  std::span<const std::byte> all(payload);
  size_t n = h.layout.tensor_bytes();
  for (uint32_t l = 0; l < h.layout.num_layers; ++l) {
    out.push_back({ComputeValueStats(all.subspan(h.layout.key_offset(l), n), h.layout.dtype),
                   ComputeValueStats(all.subspan(h.layout.value_offset(l), n), h.layout.dtype)});
  }
  return out;
}

void PrintText(const Hash128& key, const RecordHeader& h, const RecordMeta& meta,
               const NamespaceMap& namespaces, const Status& check,
               const std::vector<ChainLink>& chain, const ShowArgs& args,
               const std::vector<LayerStats>& layers) {
  int64_t now = NowMicros();
  std::printf("key            %s\n", key.ToHex().c_str());
  std::printf("check          %s\n", check.ok() ? "ok" : ("CORRUPT: " + check.message()).c_str());
  std::printf("namespace      %s (%s)\n", NamespaceLabel(namespaces, h.namespace_fp).c_str(),
              h.namespace_fp.ToHex().c_str());
  std::printf("layout         %s\n", h.layout.ToString().c_str());
  std::printf("format         version %u, codec %s\n", h.version, CodecName(h.flags).c_str());
  std::printf("depth          %u (tokens %llu..%llu of the prompt)\n", h.depth,
              static_cast<unsigned long long>(uint64_t{h.depth} * h.tokens.size()),
              static_cast<unsigned long long>((uint64_t{h.depth} + 1) * h.tokens.size() - 1));
  std::printf("parent         %s\n", h.parent.ToHex().c_str());
  std::printf("sizes          raw %s, body %s, record %s (%s)\n", FormatBytes(h.raw_size).c_str(),
              FormatBytes(h.body_size).c_str(), FormatBytes(h.record_size()).c_str(),
              FormatRatio(h.raw_size, h.record_size()).c_str());
  std::printf("payload xxh3   %016llx\n", static_cast<unsigned long long>(h.payload_checksum));
  std::printf("last access    %s (%s)\n", FormatTime(meta.last_access_us).c_str(),
              FormatAge(meta.last_access_us, now).c_str());
  std::printf("tokens         %zu", h.tokens.size());
  if (!args.tokens) std::printf(" (--tokens lists them)");
  std::printf("\n");
  if (args.tokens) {
    for (size_t i = 0; i < h.tokens.size(); ++i)
      std::printf("%s%u", i % 16 == 0 ? (i == 0 ? "  " : "\n  ") : " ", h.tokens[i]);
    std::printf("\n");
  }
  std::printf("parent chain   %zu block%s back to the namespace\n", size_t{h.depth},
              h.depth == 1 ? "" : "s");
  for (const auto& link : chain)
    std::printf("  d%-5u %s%s\n", link.depth, link.key.ToHex().c_str(),
                link.present ? "" : "  MISSING (this record is orphaned)");
  if (chain.empty() || chain.back().present)
    std::printf("  root   %s (namespace)\n", h.namespace_fp.ToHex().c_str());
  if (!args.stats) return;
  if (!check.ok()) {
    std::printf("values         not available: the payload does not decode\n");
    return;
  }
  std::printf("values (%s)\n", std::string(DTypeName(h.layout.dtype)).c_str());
  Table t;
  for (const char* c : {"layer", "tensor", "min", "max", "mean", "abs-max", "NaN", "Inf"})
    t.AddColumn(c, std::string_view(c) != "tensor");
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.5g", v);
    return std::string(buf);
  };
  for (size_t l = 0; l < layers.size(); ++l) {
    for (const auto& [name, s] : {std::pair{"K", &layers[l].k}, std::pair{"V", &layers[l].v}}) {
      t.AddRow({std::to_string(l), name, num(s->min), num(s->max), num(s->mean()), num(s->abs_max),
                std::to_string(s->nan), std::to_string(s->inf)});
    }
  }
  t.Print(stdout, 2);
}

int RunShow(const ShowArgs& args, const CommonFlags& flags) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kRead, "show", flags, &store);
  if (!s.ok()) return Fail(s.message());
  Hash128 key;
  s = ResolveKey(store.get(), args.key, &key);
  if (!s.ok()) return Fail(s.message());
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store->MultiGet(std::span<const Hash128>(&key, 1), &values, &statuses);
  // Listed but without bytes: shown below as a record that does not parse.
  if (statuses[0].IsNotFound()) values[0].clear();
  else if (!statuses[0].ok()) return Fail(statuses[0].WithContext("cannot read record " + key.ToHex()).message());
  RecordMeta meta;
  s = store->GetMeta(key, &meta);
  if (!s.ok()) return Fail(s.WithContext("cannot read the metadata of " + key.ToHex()).message());
  NamespaceMap namespaces;
  s = LoadNamespaces(store.get(), &namespaces);
  if (!s.ok()) return Fail(s.message());

  RecordHeader header;
  Status parsed = ParseRecordHeader(values[0], &header);
  if (!parsed.ok()) {
    // Nothing more can be shown of a record whose header does not parse.
    if (flags.json)
      PrintJson({{"key", key.ToHex()}, {"ok", false}, {"check", parsed.message()}, {"meta", RecordJson(meta)}});
    else
      std::printf("key            %s\ncheck          CORRUPT: %s\n", key.ToHex().c_str(),
                  parsed.message().c_str());
    return kExitProblems;
  }
  std::vector<std::byte> payload;
  RecordHeader decoded;
  Status check = CheckRecord(values[0], key, &decoded, &payload);
  std::vector<ChainLink> chain = ParentChain(store.get(), header);
  std::vector<LayerStats> layers;
  if (args.stats && check.ok()) layers = ComputeLayerStats(header, payload);

  if (!flags.json) {
    PrintText(key, header, meta, namespaces, check, chain, args, layers);
    return check.ok() ? kExitOk : kExitProblems;
  }
  nlohmann::json chain_json = nlohmann::json::array();
  for (const auto& link : chain)
    chain_json.push_back({{"depth", link.depth}, {"key", link.key.ToHex()}, {"present", link.present}});
  nlohmann::json doc = {
      {"key", key.ToHex()},
      {"ok", check.ok()},
      {"check", check.ok() ? std::string("ok") : check.message()},
      {"namespace_label", NamespaceLabel(namespaces, header.namespace_fp)},
      {"header",
       {{"version", header.version},
        {"flags", header.flags},
        {"codec", CodecName(header.flags)},
        {"layout", header.layout.ToString()},
        {"dtype", std::string(DTypeName(header.layout.dtype))},
        {"depth", header.depth},
        {"namespace", header.namespace_fp.ToHex()},
        {"parent", header.parent.ToHex()},
        {"raw_size", header.raw_size},
        {"body_size", header.body_size},
        {"record_size", header.record_size()},
        {"payload_checksum", header.payload_checksum},
        {"num_tokens", header.tokens.size()}}},
      {"meta", RecordJson(meta)},
      {"chain", chain_json},
  };
  if (args.tokens) doc["tokens"] = header.tokens;
  if (args.stats) {
    nlohmann::json list = nlohmann::json::array();
    for (size_t l = 0; l < layers.size(); ++l)
      list.push_back({{"layer", l}, {"k", StatsJson(layers[l].k)}, {"v", StatsJson(layers[l].v)}});
    doc["layers"] = list;
  }
  PrintJson(doc);
  return check.ok() ? kExitOk : kExitProblems;
}

}  // namespace

void RegisterShowCommand(CLI::App* app, CommonFlags* flags, CommandRun* run) {
  auto args = std::make_shared<ShowArgs>();
  CLI::App* cmd = app->add_subcommand(
      "show", "One record: header, tokens, parent chain, per-layer K/V value statistics");
  cmd->add_option("DIR", args->dir, "Store directory")->required();
  cmd->add_option("KEY", args->key, "Record key: 32 hex digits, or a unique prefix of 6 or more")
      ->required();
  cmd->add_flag("--tokens", args->tokens, "List the block's token ids");
  cmd->add_flag("--stats", args->stats,
                "Decode the payload: min/max/mean/abs-max and NaN/Inf counts of K and V per layer");
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunShow(*args, *flags); }; });
}

}  // namespace kvtier::cli
