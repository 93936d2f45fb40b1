// Output shared by every command: errors, JSON documents, and the names a
// person sees for namespaces, keys and codecs.

#include <cstdio>
#include <iostream>

#include "cli.h"

namespace kvtier::cli {

void AddCommonFlags(CLI::App* command, CommonFlags* flags) {
  command->add_flag("--json", flags->json, "Print one JSON document on stdout (see docs/CLI.md)");
  command->add_flag("--no-progress", flags->no_progress, "Never draw a progress bar");
  command->add_flag("-v,--verbose", flags->verbose, "Show the store's diagnostics on stderr");
}

int Fail(std::string_view message) {
  std::string line(message);
  for (char& c : line)
    if (c == '\n') c = ' ';
  std::fflush(stdout);
  std::fprintf(stderr, "kvtier: %s\n", line.c_str());
  return kExitError;
}

void PrintJson(const nlohmann::json& doc) {
  // Invalid UTF-8 in a model name must not abort the tool: replace it.
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  std::cout.flush();
}

std::string CodecName(uint16_t flags) {
  bool zstd = (flags & kRecordCompressed) != 0;
  bool shuffle = (flags & kRecordShuffled) != 0;
  if (zstd && shuffle) return "zstd+shuffle";
  if (zstd) return "zstd";
  if (shuffle) return "shuffle";
  return "raw";
}

std::string ShortHex(const Hash128& h) { return h.ToHex().substr(0, 8); }

std::string NamespaceLabel(const NamespaceMap& namespaces, const Hash128& fingerprint) {
  auto it = namespaces.find(fingerprint);
  if (it == namespaces.end() || it->second.ns.model.empty())
    return "unregistered " + ShortHex(fingerprint);
  const Namespace& ns = it->second.ns;
  std::string label = ns.model;
  if (!ns.revision.empty()) label += "@" + ns.revision;
  if (!ns.salt.empty()) label += " salt=" + ns.salt;
  if (ns.tp_size > 1) label += " tp=" + std::to_string(ns.tp_rank) + "/" + std::to_string(ns.tp_size);
  return label;
}

nlohmann::json NamespaceJson(const NamespaceEntry& entry) {
  const Namespace& ns = entry.ns;
  nlohmann::json layout = {
      {"num_layers", ns.layout.num_layers},
      {"num_kv_heads", ns.layout.num_kv_heads},
      {"head_dim", ns.layout.head_dim},
      {"block_size", ns.layout.block_size},
      {"dtype", std::string(DTypeName(ns.layout.dtype))},
      {"block_bytes", ns.layout.block_bytes()},
  };
  double ratio = entry.stored_bytes == 0 ? 0.0
                                         : static_cast<double>(entry.raw_bytes) /
                                               static_cast<double>(entry.stored_bytes);
  return {
      {"fingerprint", entry.fingerprint.ToHex()},
      {"model", ns.model},
      {"revision", ns.revision},
      {"tokenizer", ns.tokenizer},
      {"tp_rank", ns.tp_rank},
      {"tp_size", ns.tp_size},
      {"salt", ns.salt},
      {"layout", layout},
      {"blocks", entry.blocks},
      {"bytes_raw", entry.raw_bytes},
      {"bytes_stored", entry.stored_bytes},
      {"compression_ratio", ratio},
      {"last_use_us", entry.last_use_us},
  };
}

nlohmann::json RecordJson(const RecordMeta& meta) {
  return {
      {"key", meta.key.ToHex()},
      {"namespace", meta.namespace_fp.ToHex()},
      {"parent", meta.parent.ToHex()},
      {"depth", meta.depth},
      {"tokens", meta.num_tokens},
      {"tokens_covered", (uint64_t{meta.depth} + 1) * meta.num_tokens},
      {"bytes_raw", meta.raw_bytes},
      {"bytes_stored", meta.stored_bytes},
      {"codec", CodecName(meta.flags)},
      {"dtype", std::string(DTypeName(meta.dtype))},
      {"access_seq", meta.access_seq},
      {"last_access_us", meta.last_access_us},
  };
}

}  // namespace kvtier::cli
