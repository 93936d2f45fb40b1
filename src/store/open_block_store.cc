// OpenBlockStore: picks the BlockStore implementation for a location.
#include "client/daemon_block_store.h"
#include "kvtier/store.h"
#include "store/rocks_block_store.h"

namespace kvtier {

Status OpenBlockStore(const std::string& location, const StoreOptions& options,
                      std::unique_ptr<BlockStore>* store) {
  // "unix:PATH": the shared store of a kvtierd listening at PATH.
  constexpr std::string_view kDaemonScheme = "unix:";
  if (location.starts_with(kDaemonScheme)) {
    DaemonClientOptions client;
    client.socket_path = location.substr(kDaemonScheme.size());
    client.read_only = options.read_only;
    client.log = options.log;
    return DaemonBlockStore::Open(client, store);
  }
  // A directory path: the embedded RocksDB store ("rocksdb:" as in
  // Describe() is accepted too).
  constexpr std::string_view kRocksScheme = "rocksdb:";
  if (location.starts_with(kRocksScheme)) {
    return RocksBlockStore::Open(location.substr(kRocksScheme.size()), options, store);
  }
  return RocksBlockStore::Open(location, options, store);
}

}  // namespace kvtier
