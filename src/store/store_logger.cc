#include "store/store_logger.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <vector>

namespace kvtier {

namespace {

class StoreLogger : public rocksdb::Logger {
 public:
  StoreLogger(std::string dir, int fd, size_t size, size_t max_file_bytes, int keep_old_files)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
        dir_(std::move(dir)),
        fd_(fd),
        size_(size),
        max_file_bytes_(max_file_bytes),
        keep_old_files_(keep_old_files) {}
  ~StoreLogger() override {
    if (fd_ >= 0) ::close(fd_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[4096];
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const long micros = static_cast<long>(
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000);
    std::tm tm;
    localtime_r(&secs, &tm);
    int n = std::snprintf(line, sizeof(line), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %ld ",
                          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                          tm.tm_sec, micros, static_cast<long>(::syscall(SYS_gettid)));
    if (n < 0) return;
    const int body = std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n) - 1, format, ap);
    if (body < 0) return;
    n = std::min<int>(n + body, static_cast<int>(sizeof(line)) - 2);
    if (line[n - 1] != '\n') line[n++] = '\n';
    std::lock_guard<std::mutex> lock(mu_);
    if (size_ >= max_file_bytes_) Rotate();
    if (fd_ < 0) return;
    const ssize_t written = ::write(fd_, line, static_cast<size_t>(n));
    if (written > 0) size_ += static_cast<size_t>(written);  // a failure loses this line only
  }

 private:
  // REQUIRES: mu_ held.
  void Rotate() {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path log = fs::path(dir_) / "LOG";
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    fs::rename(log, fs::path(dir_) / ("LOG.old." + std::to_string(us)), ec);
    std::vector<fs::path> old;
    for (const auto& e : fs::directory_iterator(dir_, ec))
      if (e.path().filename().string().starts_with("LOG.old.")) old.push_back(e.path());
    std::sort(old.begin(), old.end());
    for (size_t i = 0; i + static_cast<size_t>(keep_old_files_) < old.size(); ++i) fs::remove(old[i], ec);
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    size_ = 0;
  }

  const std::string dir_;
  std::mutex mu_;
  int fd_;       // GUARDED_BY(mu_)
  size_t size_;  // GUARDED_BY(mu_)
  const size_t max_file_bytes_;
  const int keep_old_files_;
};

}  // namespace

std::shared_ptr<rocksdb::Logger> NewStoreLogger(const std::string& dir, size_t max_file_bytes,
                                                int keep_old_files) {
  const std::string path = dir + "/LOG";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return nullptr;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  return std::make_shared<StoreLogger>(dir, fd, size < 0 ? 0 : static_cast<size_t>(size),
                                       max_file_bytes, keep_old_files);
}

}  // namespace kvtier
