// QueryDaemonStats: one connection, one kDaemonStats request.
#include "client/daemon_connection.h"
#include "kvtier/daemon.h"

namespace kvtier {

Status QueryDaemonStats(const std::string& socket_path, int timeout_ms, DaemonStats* stats) {
  *stats = DaemonStats{};
  const daemon::Deadline deadline = daemon::Deadline::In(timeout_ms);
  std::unique_ptr<DaemonConnection> c;
  Status s = DaemonConnection::Open(socket_path, "kvtier-stats", deadline, &c);
  if (!s.ok()) return s;
  std::string body;
  s = c->Call(daemon::Op::kDaemonStats, std::string_view(), &body, deadline);
  if (!s.ok()) return s;
  daemon::WireReader r(body);
  if (!daemon::DecodeDaemonStats(&r, stats) || !r.done())
    return Status::Corruption("kvtierd at " + socket_path + " sent malformed stats (" +
                              std::to_string(body.size()) + " bytes)");
  return Status::OK();
}

}  // namespace kvtier
