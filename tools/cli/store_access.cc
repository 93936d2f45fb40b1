// Opening a store for a command, and finding what the user named in it.

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "cli.h"

namespace kvtier::cli {

namespace {

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
  });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string HeldMessage(const std::string& dir, std::string_view command) {
  return "store " + dir + " is held by another process, so `kvtier " + std::string(command) +
         "` cannot write to it; stop that process and retry (read-only commands - stats, ls, "
         "tree, show, verify, export - work while it runs)";
}

}  // namespace

Status OpenStore(const std::string& dir, Access access, std::string_view command,
                 const CommonFlags& flags, std::unique_ptr<BlockStore>* store) {
  struct stat st;
  bool exists = ::stat(dir.c_str(), &st) == 0;
  if (exists && !S_ISDIR(st.st_mode))
    return Status::InvalidArgument(dir + " is not a directory (a store is a directory)");
  if (!exists && access != Access::kCreate)
    return Status::NotFound("no store at " + dir + ": the directory does not exist");

  StoreOptions options;
  options.read_only = access == Access::kRead;
  options.create_if_missing = access == Access::kCreate;
  // The budget a store keeps is its own: 0 here means "keep the store's
  // budget", so an inspection or a trim never evicts by a CLI default.
  options.max_bytes = 0;
  bool verbose = flags.verbose;
  options.log = [verbose](std::string_view line) {
    if (verbose) std::fprintf(stderr, "kvtier: store: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  Status s = OpenBlockStore(dir, options, store);
  if (s.ok()) return s;
  if (s.IsBusy()) {
    // Held by kvtierd: the command runs through the daemon instead.
    std::string socket;
    int pid = 0;
    if (FindHoldingDaemon(dir, &socket, &pid)) {
      StoreOptions through;
      through.log = options.log;
      Status d = OpenBlockStore("unix:" + socket, through, store);
      if (d.ok()) {
        std::fprintf(stderr, "kvtier: store %s is held by kvtierd (pid %d); `kvtier %.*s` runs through its socket %s\n",
                     dir.c_str(), pid, static_cast<int>(command.size()), command.data(), socket.c_str());
        return d;
      }
      if (!d.IsUnavailable())
        return Status::Busy("store " + dir + " is held by kvtierd (pid " + std::to_string(pid) + ", socket " +
                            socket + "), which refused `kvtier " + std::string(command) + "`: " + d.message());
    }
    return Status::Busy(HeldMessage(dir, command));
  }
  // The store's other messages name the directory and the cause already.
  return s;
}

Status LoadRecords(BlockStore* store, std::vector<RecordMeta>* records) {
  records->clear();
  return store->ForEachRecord([records](const RecordMeta& meta) {
    records->push_back(meta);
    return true;
  });
}

Status LoadNamespaces(BlockStore* store, NamespaceMap* out) {
  std::vector<NamespaceEntry> entries;
  Status s = store->ListNamespaces(&entries);
  if (!s.ok()) return s.WithContext("cannot list namespaces");
  out->clear();
  for (auto& e : entries) out->emplace(e.fingerprint, std::move(e));
  return Status::OK();
}

Status ResolveNamespace(const NamespaceMap& namespaces, std::string_view spec,
                        Hash128* fingerprint) {
  std::vector<const NamespaceEntry*> matches;
  std::string lower = Lower(spec);
  for (const auto& [fp, e] : namespaces) {
    bool by_fp = IsHex(spec) && spec.size() >= 4 && fp.ToHex().starts_with(lower);
    bool by_name = e.ns.model == spec || (e.ns.model + "@" + e.ns.revision) == spec;
    if (by_fp || by_name) matches.push_back(&e);
  }
  if (matches.size() == 1) {
    *fingerprint = matches[0]->fingerprint;
    return Status::OK();
  }
  std::string candidates;
  for (const auto* e : matches) {
    candidates += (candidates.empty() ? "" : ", ") + ShortHex(e->fingerprint) + " (" +
                  NamespaceLabel(namespaces, e->fingerprint) + ")";
  }
  if (matches.empty()) {
    std::string known;
    for (const auto& [fp, e] : namespaces)
      known += (known.empty() ? "" : ", ") + ShortHex(fp) + " (" + NamespaceLabel(namespaces, fp) + ")";
    return Status::NotFound("no namespace matches '" + std::string(spec) + "'; the store has " +
                            (known.empty() ? std::string("none") : known));
  }
  return Status::InvalidArgument("namespace '" + std::string(spec) + "' is ambiguous: " +
                                 candidates + "; give more fingerprint digits");
}

Status ResolveKey(BlockStore* store, std::string_view text, Hash128* key) {
  if (!IsHex(text) || text.size() > 32)
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not a record key (32 hex digits, or a prefix of them)");
  if (text.size() == 32) {
    Hash128::FromHex(text, key);
    RecordMeta meta;
    Status s = store->GetMeta(*key, &meta);
    if (s.IsNotFound()) return Status::NotFound("no record with key " + key->ToHex());
    return s;
  }
  if (text.size() < 6)
    return Status::InvalidArgument("key prefix '" + std::string(text) +
                                   "' is too short (give at least 6 hex digits)");
  std::string prefix = Lower(text);
  std::vector<Hash128> matches;
  Status s = store->ForEachRecord([&](const RecordMeta& meta) {
    if (meta.key.ToHex().starts_with(prefix)) matches.push_back(meta.key);
    return matches.size() < 2;
  });
  if (!s.ok()) return s;
  if (matches.empty()) return Status::NotFound("no record with a key starting " + prefix);
  if (matches.size() > 1)
    return Status::InvalidArgument("key prefix " + prefix + " is ambiguous (" +
                                   matches[0].ToHex() + ", " + matches[1].ToHex() + ", ...)");
  *key = matches[0];
  return Status::OK();
}

Status CheckRecord(std::string_view record, const Hash128& key, RecordHeader* header,
                   std::vector<std::byte>* payload) {
  std::vector<std::byte> scratch;
  Status s = DecodeRecord(record, header, payload != nullptr ? payload : &scratch);
  if (!s.ok()) return s;
  Hash128 computed = header->Key();
  if (computed != key)
    return Status::Corruption("stored under " + key.ToHex() + " but its parent and tokens hash to " +
                              computed.ToHex());
  if (header->depth == 0 && header->parent != header->namespace_fp)
    return Status::Corruption("depth 0 but its parent hash is not its namespace fingerprint");
  return Status::OK();
}

}  // namespace kvtier::cli
