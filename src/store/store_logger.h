// StoreLogger: RocksDB's diagnostics (the LOG file of a store directory),
// written so that a full disk costs log lines, never the process.
//
// RocksDB's own file logger keeps a WritableFileWriter that remembers a
// failed write and, in Debian's build (assertions on), aborts the process
// on the next line logged: on a full disk, the next error message RocksDB
// logs kills the server (seen in tests/disk_full_test.cpp on a real
// tmpfs). This one appends with write(2) and ignores failures. It keeps
// RocksDB's format ("time thread-id message") and rotation (LOG.old.<us>,
// a few files of bounded size).
#ifndef KVTIER_STORE_STORE_LOGGER_H_
#define KVTIER_STORE_STORE_LOGGER_H_

#include <memory>
#include <string>

#include <rocksdb/env.h>

namespace kvtier {

// A logger appending to `dir`/LOG at INFO level, rotating it past
// `max_file_bytes` and keeping `keep_old_files` old ones; nullptr if LOG
// cannot be opened (the caller falls back to another sink).
std::shared_ptr<rocksdb::Logger> NewStoreLogger(const std::string& dir, size_t max_file_bytes,
                                                int keep_old_files);

}  // namespace kvtier

#endif  // KVTIER_STORE_STORE_LOGGER_H_
