// kvtierd's counters (see daemon_metrics.h).
#include "daemon/daemon_metrics.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <vector>

namespace kvtier::daemon {

namespace {

void Add(std::atomic<uint64_t>& c, uint64_t v) { c.fetch_add(v, std::memory_order_relaxed); }
uint64_t Get(const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); }

}  // namespace

int LatencyHistogram::BucketOf(uint64_t micros) {
  if (micros < 1) micros = 1;
  const int e = 63 - std::countl_zero(micros);  // floor(log2)
  const uint64_t sub = e >= 2 ? (micros >> (e - 2)) & 3 : (micros << (2 - e)) & 3;
  const int bucket = e * 4 + static_cast<int>(sub);
  return bucket < kBuckets ? bucket : kBuckets - 1;
}

double LatencyHistogram::UpperBoundSeconds(int bucket) {
  const int e = bucket / 4, sub = bucket % 4;
  return std::ldexp(static_cast<double>(5 + sub), e - 2) * 1e-6;
}

void LatencyHistogram::Record(uint64_t micros) {
  Add(buckets_[BucketOf(micros)], 1);
  Add(count_, 1);
  Add(sum_micros_, micros);
}

LatencySummary LatencyHistogram::Summary() const {
  LatencySummary s;
  uint64_t counts[kBuckets];
  uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) total += counts[i] = Get(buckets_[i]);
  s.count = total;
  s.sum_seconds = static_cast<double>(Get(sum_micros_)) * 1e-6;
  if (total == 0) return s;
  const double qs[4] = {0.5, 0.9, 0.99, 0.999};
  double* outs[4] = {&s.p50_seconds, &s.p90_seconds, &s.p99_seconds, &s.p999_seconds};
  for (int q = 0; q < 4; ++q) {
    const uint64_t rank = static_cast<uint64_t>(std::ceil(qs[q] * static_cast<double>(total)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[i];
      if (seen >= rank) {
        *outs[q] = UpperBoundSeconds(i);
        break;
      }
    }
  }
  return s;
}

void RequestCounters::Record(const RequestRecord& r) {
  Add(requests_, 1);
  if (r.error) Add(errors_, 1);
  switch (r.op) {
    case Op::kGet:
      Add(get_requests_, 1);
      Add(get_keys_, r.keys);
      Add(get_hits_, r.hits);
      Add(get_bytes_, r.bytes);
      get_latency_.Record(r.micros);
      return;
    case Op::kPut:
      Add(put_requests_, 1);
      if (r.rejected) {
        Add(put_rejected_, 1);
      } else if (!r.error) {
        Add(put_records_, r.keys);
        Add(put_bytes_, r.bytes);
      }
      put_latency_.Record(r.micros);
      return;
    case Op::kExists:
      Add(exists_requests_, 1);
      Add(exists_keys_, r.keys);
      exists_latency_.Record(r.micros);
      return;
    case Op::kTouch: Add(touch_requests_, 1); break;
    case Op::kDelete: Add(delete_requests_, 1); break;
    case Op::kFlush: Add(flush_requests_, 1); break;
    default: Add(other_requests_, 1); break;
  }
  other_latency_.Record(r.micros);
}

DaemonCounters RequestCounters::Snapshot() const {
  DaemonCounters c;
  c.requests = Get(requests_);
  c.get_requests = Get(get_requests_);
  c.get_keys = Get(get_keys_);
  c.get_hits = Get(get_hits_);
  c.get_bytes = Get(get_bytes_);
  c.put_requests = Get(put_requests_);
  c.put_records = Get(put_records_);
  c.put_bytes = Get(put_bytes_);
  c.put_rejected = Get(put_rejected_);
  c.exists_requests = Get(exists_requests_);
  c.exists_keys = Get(exists_keys_);
  c.touch_requests = Get(touch_requests_);
  c.delete_requests = Get(delete_requests_);
  c.flush_requests = Get(flush_requests_);
  c.other_requests = Get(other_requests_);
  c.errors = Get(errors_);
  c.protocol_errors = Get(protocol_errors_);
  c.get_latency = get_latency_.Summary();
  c.put_latency = put_latency_.Summary();
  c.exists_latency = exists_latency_.Summary();
  c.other_latency = other_latency_.Summary();
  return c;
}

DaemonMetrics::DaemonMetrics() : start_(std::chrono::steady_clock::now()) {}

std::shared_ptr<RequestCounters> DaemonMetrics::Connected(const ClientIdentity& who, bool* first) {
  std::lock_guard<std::mutex> lock(mu_);
  ClientEntry& e = clients_[who.name];
  if (e.counters == nullptr) e.counters = std::make_shared<RequestCounters>();
  e.identity = who;
  *first = e.connections == 0;
  ++e.connections;
  e.last_change = ++changes_;
  DropIdleClients();
  return e.counters;
}

bool DaemonMetrics::Disconnected(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = clients_.find(name);
  if (it == clients_.end()) return false;
  if (it->second.connections > 0) --it->second.connections;
  const bool last = it->second.connections == 0;
  it->second.last_change = ++changes_;
  DropIdleClients();
  return last;
}

void DaemonMetrics::DropIdleClients() {
  size_t idle = 0;
  for (const auto& [name, e] : clients_) idle += e.connections == 0 ? 1 : 0;
  while (idle > kRetainedIdleClients) {
    auto oldest = clients_.end();
    for (auto it = clients_.begin(); it != clients_.end(); ++it) {
      if (it->second.connections == 0 &&
          (oldest == clients_.end() || it->second.last_change < oldest->second.last_change))
        oldest = it;
    }
    clients_.erase(oldest);
    --idle;
  }
}

void DaemonMetrics::Record(RequestCounters* client, const RequestRecord& r) {
  total_.Record(r);
  if (client != nullptr) client->Record(r);
}

void DaemonMetrics::ProtocolError(RequestCounters* client) {
  total_.ProtocolError();
  if (client != nullptr) client->ProtocolError();
}

DaemonStats DaemonMetrics::Snapshot() const {
  DaemonStats s;
  s.protocol_version = kProtocolVersion;
  s.pid = static_cast<int32_t>(::getpid());
  s.uptime_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  s.connections = open_.load(std::memory_order_relaxed);
  s.connections_accepted = Get(accepted_);
  s.connections_rejected = Get(rejected_);
  s.total = total_.Snapshot();
  std::vector<const ClientEntry*> live, idle;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, e] : clients_) (e.connections > 0 ? live : idle).push_back(&e);
  for (const auto* group : {&live, &idle}) {
    for (const ClientEntry* e : *group) {
      DaemonClientStats c;
      c.name = e->identity.name;
      c.uid = e->identity.uid;
      c.gid = e->identity.gid;
      c.pid = e->identity.pid;
      c.connections = e->connections;
      c.counters = e->counters->Snapshot();
      s.clients.push_back(std::move(c));
    }
  }
  return s;
}

}  // namespace kvtier::daemon
