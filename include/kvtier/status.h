// Status: the outcome of a kvtier call. Errors are values, never exceptions
// across the API (LevelDB's leveldb::Status is the model).
//
// A Status is either OK or carries a code and a message that names the cause
// ("payload is 4096 bytes, layout needs 8192"). Tests assert on both.
#ifndef KVTIER_STATUS_H_
#define KVTIER_STATUS_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace kvtier {

class [[nodiscard]] Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kNotFound = 1,         // no such record / key / namespace
    kCorruption = 2,       // bytes fail validation (record, archive, frame)
    kInvalidArgument = 3,  // the caller passed something wrong
    kIOError = 4,          // the file system or RocksDB failed
    kBusy = 5,             // held by another process (store lock, socket)
    kFull = 6,             // a budget leaves no room (all blocks pinned)
    kNotSupported = 7,     // unknown format version, unsupported feature
    kUnavailable = 8,      // a peer (kvtierd) is down or timed out
  };

  Status() = default;  // OK

  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status Busy(std::string msg) { return Status(Code::kBusy, std::move(msg)); }
  static Status Full(std::string msg) { return Status(Code::kFull, std::move(msg)); }
  static Status NotSupported(std::string msg) { return Status(Code::kNotSupported, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsBusy() const { return code_ == Code::kBusy; }
  bool IsFull() const { return code_ == Code::kFull; }
  bool IsNotSupported() const { return code_ == Code::kNotSupported; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }

  // "OK", or "<Code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

std::string_view CodeName(Status::Code code);

}  // namespace kvtier

#endif  // KVTIER_STATUS_H_
