// FormatPrometheus: kvtierd's counters in the Prometheus text exposition
// format 0.0.4 (one HELP and TYPE line per family, then its samples).
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kvtier/daemon.h"

namespace kvtier {

namespace {

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string Number(uint64_t v) { return std::to_string(v); }

struct Labels {
  std::string text;  // `a="x",b="y"` (no braces)
  Labels With(std::string_view name, std::string_view value) const {
    Labels l = *this;
    if (!l.text.empty()) l.text += ',';
    l.text += std::string(name) + "=\"" + Escape(value) + "\"";
    return l;
  }
};

class Writer {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP " + std::string(name) + " " + std::string(help) + "\n";
    out_ += "# TYPE " + std::string(name) + " " + std::string(type) + "\n";
  }
  void Sample(std::string_view name, const Labels& labels, const std::string& value) {
    out_ += name;
    if (!labels.text.empty()) out_ += "{" + labels.text + "}";
    out_ += " " + value + "\n";
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// One counter family per field of DaemonCounters, for the total and for
// each client (the client label distinguishes them; the total has none).
struct CounterField {
  const char* name;
  const char* help;
  std::function<uint64_t(const DaemonCounters&)> get;
};

const std::vector<CounterField>& CounterFields() {
  static const std::vector<CounterField> fields = {
      {"get_keys_total", "Keys asked for in get requests.", [](const DaemonCounters& c) { return c.get_keys; }},
      {"get_hits_total", "Keys answered with a record.", [](const DaemonCounters& c) { return c.get_hits; }},
      {"get_bytes_total", "Record bytes sent.", [](const DaemonCounters& c) { return c.get_bytes; }},
      {"put_records_total", "Records received in accepted puts.", [](const DaemonCounters& c) { return c.put_records; }},
      {"put_bytes_total", "Record bytes received in accepted puts.", [](const DaemonCounters& c) { return c.put_bytes; }},
      {"put_rejected_total", "Puts the store refused (a bad record, a record over the budget).",
       [](const DaemonCounters& c) { return c.put_rejected; }},
      {"exists_keys_total", "Keys asked for in exists requests.", [](const DaemonCounters& c) { return c.exists_keys; }},
      {"errors_total", "Requests the store failed (I/O errors).", [](const DaemonCounters& c) { return c.errors; }},
      {"protocol_errors_total", "Malformed frames; each closed its connection.",
       [](const DaemonCounters& c) { return c.protocol_errors; }},
  };
  return fields;
}

void RequestsByOp(Writer& w, const std::string& name, const Labels& base, const DaemonCounters& c) {
  const std::pair<const char*, uint64_t> ops[] = {
      {"get", c.get_requests},       {"put", c.put_requests},       {"exists", c.exists_requests},
      {"touch", c.touch_requests},   {"delete", c.delete_requests}, {"flush", c.flush_requests},
      {"other", c.other_requests}};
  for (const auto& [op, n] : ops) w.Sample(name, base.With("op", op), Number(n));
}

void Latencies(Writer& w, const std::string& name, const Labels& base, const DaemonCounters& c) {
  const std::pair<const char*, const LatencySummary*> ops[] = {{"get", &c.get_latency},
                                                               {"put", &c.put_latency},
                                                               {"exists", &c.exists_latency},
                                                               {"other", &c.other_latency}};
  for (const auto& [op, l] : ops) {
    const Labels labels = base.With("op", op);
    const std::pair<const char*, double> qs[] = {{"0.5", l->p50_seconds},
                                                 {"0.9", l->p90_seconds},
                                                 {"0.99", l->p99_seconds},
                                                 {"0.999", l->p999_seconds}};
    for (const auto& [q, v] : qs)
      w.Sample(name, labels.With("quantile", q), l->count == 0 ? "NaN" : Number(v));
    w.Sample(name + "_sum", labels, Number(l->sum_seconds));
    w.Sample(name + "_count", labels, Number(l->count));
  }
}

}  // namespace

std::string FormatPrometheus(const DaemonStats& s) {
  Writer w;
  const Labels none;
  w.Family("kvtierd_up", "gauge", "1 while the daemon serves.");
  w.Sample("kvtierd_up", none, "1");
  w.Family("kvtierd_uptime_seconds", "gauge", "Seconds since the daemon started.");
  w.Sample("kvtierd_uptime_seconds", none, Number(s.uptime_seconds));
  w.Family("kvtierd_connections", "gauge", "Client connections open now.");
  w.Sample("kvtierd_connections", none, Number(uint64_t{s.connections}));
  w.Family("kvtierd_connections_accepted_total", "counter", "Connections accepted.");
  w.Sample("kvtierd_connections_accepted_total", none, Number(s.connections_accepted));
  w.Family("kvtierd_connections_rejected_total", "counter",
           "Connections refused: peer uid/gid not allowed.");
  w.Sample("kvtierd_connections_rejected_total", none, Number(s.connections_rejected));

  w.Family("kvtierd_requests_total", "counter", "Requests answered, by operation.");
  RequestsByOp(w, "kvtierd_requests_total", none, s.total);
  for (const CounterField& f : CounterFields()) {
    const std::string name = std::string("kvtierd_") + f.name;
    w.Family(name, "counter", f.help);
    w.Sample(name, none, Number(f.get(s.total)));
  }
  w.Family("kvtierd_request_duration_seconds", "summary",
           "Time from a request's arrival to its answer, by operation.");
  Latencies(w, "kvtierd_request_duration_seconds", none, s.total);

  const StoreStats& st = s.store_stats;
  const std::pair<const char*, std::pair<const char*, uint64_t>> gauges[] = {
      {"kvtierd_store_records", {"Records in the store.", st.records}},
      {"kvtierd_store_raw_bytes", {"Decoded payload bytes of the stored records.", st.raw_bytes}},
      {"kvtierd_store_stored_bytes", {"Record bytes in the store (what the budget counts).", st.stored_bytes}},
      {"kvtierd_store_max_bytes", {"The store's byte budget (0 = none).", st.max_bytes}},
      {"kvtierd_store_files_bytes", {"Bytes of the store's files on disk.", st.files_bytes}}};
  for (const auto& [name, g] : gauges) {
    w.Family(name, "gauge", g.first);
    w.Sample(name, none, Number(g.second));
  }
  w.Family("kvtierd_store_evicted_records_total", "counter",
           "Records the budget evicted since the daemon started.");
  w.Sample("kvtierd_store_evicted_records_total", none, Number(st.evicted_records));
  w.Family("kvtierd_store_orphans_collected_total", "counter",
           "Descendants of evicted records collected with them.");
  w.Sample("kvtierd_store_orphans_collected_total", none, Number(st.orphans_collected));

  if (!s.clients.empty()) {
    w.Family("kvtierd_client_connections", "gauge", "Connections open now, per client.");
    for (const DaemonClientStats& c : s.clients)
      w.Sample("kvtierd_client_connections", none.With("client", c.name), Number(uint64_t{c.connections}));
    w.Family("kvtierd_client_requests_total", "counter", "Requests answered, per client and operation.");
    for (const DaemonClientStats& c : s.clients)
      RequestsByOp(w, "kvtierd_client_requests_total", none.With("client", c.name), c.counters);
    for (const CounterField& f : CounterFields()) {
      const std::string name = std::string("kvtierd_client_") + f.name;
      w.Family(name, "counter", std::string(f.help) + " Per client.");
      for (const DaemonClientStats& c : s.clients)
        w.Sample(name, none.With("client", c.name), Number(f.get(c.counters)));
    }
    w.Family("kvtierd_client_request_duration_seconds", "summary",
             "Request latency per client and operation.");
    for (const DaemonClientStats& c : s.clients)
      Latencies(w, "kvtierd_client_request_duration_seconds", none.With("client", c.name), c.counters);
  }
  return w.Take();
}

}  // namespace kvtier
