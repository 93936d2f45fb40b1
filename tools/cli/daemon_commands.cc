// `kvtier stats --socket PATH`: a running kvtierd's counters (text, --json
// or --prometheus), and finding the daemon that holds a store directory.

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli.h"
#include "format.h"
#include "kvtier/daemon.h"

namespace kvtier::cli {

namespace {

constexpr int kStatsTimeoutMs = 5000;
constexpr char kDaemonNote[] = "KVTIERD";  // written by kvtierd into the store it holds

std::string Millis(double seconds, uint64_t count) {
  if (count == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), seconds < 0.01 ? "%.2f ms" : "%.1f ms", seconds * 1e3);
  return buf;
}

std::string Uptime(double seconds) {
  const uint64_t s = static_cast<uint64_t>(seconds);
  char buf[48];
  if (s >= 86400) {
    std::snprintf(buf, sizeof(buf), "%llud %lluh", static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s % 86400 / 3600));
  } else if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lluh %llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llum %llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  }
  return buf;
}

nlohmann::json LatencyJson(const LatencySummary& l) {
  return {{"count", l.count},         {"sum_seconds", l.sum_seconds}, {"p50_seconds", l.p50_seconds},
          {"p90_seconds", l.p90_seconds}, {"p99_seconds", l.p99_seconds}, {"p999_seconds", l.p999_seconds}};
}

nlohmann::json CountersJson(const DaemonCounters& c) {
  return {{"requests", c.requests},
          {"get_requests", c.get_requests},
          {"get_keys", c.get_keys},
          {"get_hits", c.get_hits},
          {"get_bytes", c.get_bytes},
          {"put_requests", c.put_requests},
          {"put_records", c.put_records},
          {"put_bytes", c.put_bytes},
          {"put_rejected", c.put_rejected},
          {"exists_requests", c.exists_requests},
          {"exists_keys", c.exists_keys},
          {"touch_requests", c.touch_requests},
          {"delete_requests", c.delete_requests},
          {"flush_requests", c.flush_requests},
          {"other_requests", c.other_requests},
          {"errors", c.errors},
          {"protocol_errors", c.protocol_errors},
          {"latency",
           {{"get", LatencyJson(c.get_latency)},
            {"put", LatencyJson(c.put_latency)},
            {"exists", LatencyJson(c.exists_latency)},
            {"other", LatencyJson(c.other_latency)}}}};
}

void PrintText(const std::string& socket, const DaemonStats& s) {
  const StoreStats& st = s.store_stats;
  const DaemonCounters& t = s.total;
  std::printf("daemon         kvtierd pid %d on %s, up %s, protocol %u\n", s.pid, socket.c_str(),
              Uptime(s.uptime_seconds).c_str(), s.protocol_version);
  std::printf("store          %s: %s, %s stored of %s\n", s.store.c_str(), Count(st.records, "record").c_str(),
              FormatBytes(st.stored_bytes).c_str(),
              st.max_bytes == 0 ? "no budget" : (FormatBytes(st.max_bytes) + " budget").c_str());
  std::printf("connections    %u open, %llu accepted, %llu refused (uid/gid)\n", s.connections,
              static_cast<unsigned long long>(s.connections_accepted),
              static_cast<unsigned long long>(s.connections_rejected));
  std::printf("gets           %llu requests, %llu keys, %llu hits, %s sent\n",
              static_cast<unsigned long long>(t.get_requests), static_cast<unsigned long long>(t.get_keys),
              static_cast<unsigned long long>(t.get_hits), FormatBytes(t.get_bytes).c_str());
  std::printf("puts           %llu requests, %llu records, %s received, %llu refused\n",
              static_cast<unsigned long long>(t.put_requests), static_cast<unsigned long long>(t.put_records),
              FormatBytes(t.put_bytes).c_str(), static_cast<unsigned long long>(t.put_rejected));
  std::printf("other          %llu exists, %llu touch, %llu delete, %llu flush, %llu other\n",
              static_cast<unsigned long long>(t.exists_requests), static_cast<unsigned long long>(t.touch_requests),
              static_cast<unsigned long long>(t.delete_requests), static_cast<unsigned long long>(t.flush_requests),
              static_cast<unsigned long long>(t.other_requests));
  std::printf("errors         %llu store, %llu protocol (connection closed)\n",
              static_cast<unsigned long long>(t.errors), static_cast<unsigned long long>(t.protocol_errors));
  std::printf("latency        get p50 %s p99 %s, put p50 %s p99 %s\n",
              Millis(t.get_latency.p50_seconds, t.get_latency.count).c_str(),
              Millis(t.get_latency.p99_seconds, t.get_latency.count).c_str(),
              Millis(t.put_latency.p50_seconds, t.put_latency.count).c_str(),
              Millis(t.put_latency.p99_seconds, t.put_latency.count).c_str());
  std::printf("\nclients (%zu)\n", s.clients.size());
  Table table;
  for (const char* h : {"name", "pid", "uid", "conn"}) table.AddColumn(h, std::string_view(h) != "name");
  for (const char* h : {"gets", "hits", "sent", "puts", "records", "refused", "errors", "get p50", "get p99",
                        "put p99"})
    table.AddColumn(h, true);
  for (const DaemonClientStats& c : s.clients) {
    const DaemonCounters& k = c.counters;
    table.AddRow({c.name, std::to_string(c.pid), std::to_string(c.uid), std::to_string(c.connections),
                  std::to_string(k.get_requests), std::to_string(k.get_hits), FormatBytes(k.get_bytes),
                  std::to_string(k.put_requests), std::to_string(k.put_records),
                  std::to_string(k.put_rejected), std::to_string(k.errors + k.protocol_errors),
                  Millis(k.get_latency.p50_seconds, k.get_latency.count),
                  Millis(k.get_latency.p99_seconds, k.get_latency.count),
                  Millis(k.put_latency.p99_seconds, k.put_latency.count)});
  }
  if (!table.empty()) table.Print(stdout, 2);
}

}  // namespace

int RunDaemonStats(const std::string& socket, bool prometheus, const CommonFlags& flags) {
  DaemonStats s;
  Status st = QueryDaemonStats(socket, kStatsTimeoutMs, &s);
  if (!st.ok()) return Fail(st.WithContext("cannot read kvtierd's counters").message());
  if (prometheus) {
    std::fputs(FormatPrometheus(s).c_str(), stdout);
    return kExitOk;
  }
  if (!flags.json) {
    PrintText(socket, s);
    return kExitOk;
  }
  nlohmann::json clients = nlohmann::json::array();
  for (const DaemonClientStats& c : s.clients) {
    clients.push_back({{"name", c.name},
                       {"pid", c.pid},
                       {"uid", c.uid},
                       {"gid", c.gid},
                       {"connections", c.connections},
                       {"counters", CountersJson(c.counters)}});
  }
  const StoreStats& store = s.store_stats;
  PrintJson({{"socket", socket},
             {"pid", s.pid},
             {"protocol_version", s.protocol_version},
             {"uptime_seconds", s.uptime_seconds},
             {"store",
              {{"location", s.store},
               {"records", store.records},
               {"bytes_raw", store.raw_bytes},
               {"bytes_stored", store.stored_bytes},
               {"max_bytes", store.max_bytes},
               {"files_bytes", store.files_bytes},
               {"evicted_records", store.evicted_records},
               {"orphans_collected", store.orphans_collected}}},
             {"connections", s.connections},
             {"connections_accepted", s.connections_accepted},
             {"connections_rejected", s.connections_rejected},
             {"total", CountersJson(s.total)},
             {"clients", clients}});
  return kExitOk;
}

bool FindHoldingDaemon(const std::string& dir, std::string* socket, int* pid) {
  std::ifstream note(dir + "/" + kDaemonNote);
  std::string key, value;
  socket->clear();
  *pid = 0;
  while (note >> key) {
    std::getline(note >> std::ws, value);
    if (key == "socket") *socket = value;
    if (key == "pid") *pid = std::atoi(value.c_str());
  }
  return !socket->empty();
}

}  // namespace kvtier::cli
