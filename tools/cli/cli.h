// The `kvtier` command-line tool: what every command group shares.
//
// Each command group (inspect, tree, show, verify, maintenance, archive)
// registers its subcommands on the CLI11 app; parsing only records which
// command to run, main() runs it after parsing and exits with its code.
//
// Exit codes: 0 ok, 1 problems found (verify, skipped records), 2 usage or
// open errors. An error is one line on stderr: "kvtier: <message>".
#ifndef KVTIER_TOOLS_CLI_CLI_H_
#define KVTIER_TOOLS_CLI_CLI_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kvtier/hash.h"
#include "kvtier/record.h"
#include "kvtier/status.h"
#include "kvtier/store.h"

namespace kvtier::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitProblems = 1;
inline constexpr int kExitError = 2;

// Flags every command takes.
struct CommonFlags {
  bool json = false;         // one JSON document on stdout instead of tables
  bool no_progress = false;  // never draw a progress bar
  bool verbose = false;      // pass the store's diagnostics through to stderr
};

// The command chosen on the command line, run after parsing.
using CommandRun = std::function<int()>;

// Adds --json, --no-progress and --verbose to `command`.
void AddCommonFlags(CLI::App* command, CommonFlags* flags);

// Command groups. Each adds its subcommands to `app`; the one the user
// names sets *run.
void RegisterInspectCommands(CLI::App* app, CommonFlags* flags, CommandRun* run);  // stats, ls
void RegisterTreeCommand(CLI::App* app, CommonFlags* flags, CommandRun* run);
void RegisterShowCommand(CLI::App* app, CommonFlags* flags, CommandRun* run);
void RegisterVerifyCommand(CLI::App* app, CommonFlags* flags, CommandRun* run);
void RegisterMaintenanceCommands(CLI::App* app, CommonFlags* flags,
                                 CommandRun* run);  // trim, compact
void RegisterArchiveCommands(CLI::App* app, CommonFlags* flags,
                             CommandRun* run);  // export, import

// Prints "kvtier: <message>" (one line) on stderr; returns kExitError.
int Fail(std::string_view message);

// Prints `doc` on stdout, indented, with a final newline.
void PrintJson(const nlohmann::json& doc);

// How a command uses the store.
enum class Access {
  kRead,    // read-only: works while another process holds the store
  kWrite,   // takes the write lock; the store must exist
  kCreate,  // takes the write lock; creates an empty store if none exists
};

// Opens the store in `dir` for `command` (named in messages). The Status
// message is the whole error line: a missing directory, a directory that is
// not a store, a store held by another process (and what to do about it).
Status OpenStore(const std::string& dir, Access access, std::string_view command,
                 const CommonFlags& flags, std::unique_ptr<BlockStore>* store);

// `kvtier stats --socket PATH`: kvtierd's counters as text, JSON or
// Prometheus text (daemon_commands.cc).
int RunDaemonStats(const std::string& socket, bool prometheus, const CommonFlags& flags);

// The kvtierd that says (in DIR/KVTIERD) it holds the store in `dir`: its
// socket and pid. False if there is no such note (it may be stale: the
// caller connects to find out).
bool FindHoldingDaemon(const std::string& dir, std::string* socket, int* pid);

// The metadata of every record, in the store's iteration order.
Status LoadRecords(BlockStore* store, std::vector<RecordMeta>* records);

// The manifest, by fingerprint.
using NamespaceMap = std::map<Hash128, NamespaceEntry>;
Status LoadNamespaces(BlockStore* store, NamespaceMap* out);

// Finds the namespace `spec` names: a fingerprint (32 hex digits, or a
// unique prefix of at least 4), a model name, or "model@revision".
// NotFound or InvalidArgument (ambiguous) with the candidates otherwise.
Status ResolveNamespace(const NamespaceMap& namespaces, std::string_view spec, Hash128* fingerprint);

// Finds the record `text` names: a key (32 hex digits) or a unique prefix
// of at least 6 hex digits. NotFound / InvalidArgument otherwise.
Status ResolveKey(BlockStore* store, std::string_view text, Hash128* key);

// Decodes and checks one record read under `key`: header, payload checksum,
// and that the key recomputed from the parent hash and tokens is `key`.
// Corruption naming the reason otherwise. `payload` may be null.
Status CheckRecord(std::string_view record, const Hash128& key, RecordHeader* header,
                   std::vector<std::byte>* payload);

// "zstd+shuffle", "zstd", "shuffle" or "raw".
std::string CodecName(uint16_t flags);

// A namespace as people name it: "model@revision" (or the short fingerprint
// when the manifest has no description).
std::string NamespaceLabel(const NamespaceMap& namespaces, const Hash128& fingerprint);

// The first 8 hex digits of a key, for tables and trees.
std::string ShortHex(const Hash128& h);

// JSON objects with the documented field names (docs/CLI.md).
nlohmann::json NamespaceJson(const NamespaceEntry& entry);
nlohmann::json RecordJson(const RecordMeta& meta);

}  // namespace kvtier::cli

#endif  // KVTIER_TOOLS_CLI_CLI_H_
