#include "trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "rng.h"

namespace kvtier::bench {

namespace {

// Samples ranks 0..n-1 with P(k) proportional to 1/(k+1)^s.
class ZipfSampler {
 public:
  ZipfSampler(uint32_t n, double s) : cdf_(n) {
    double sum = 0;
    for (uint32_t k = 0; k < n; ++k) {
      sum += 1.0 / std::pow(k + 1.0, s);
      cdf_[k] = sum;
    }
    for (auto& c : cdf_) c /= sum;
  }
  uint32_t Sample(Rng& rng) const {
    double u = rng.Uniform();
    auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
    return static_cast<uint32_t>(std::min<size_t>(it - cdf_.begin(), cdf_.size() - 1));
  }

 private:
  std::vector<double> cdf_;
};

void AppendRandom(Rng& rng, uint32_t n, uint32_t vocab, Prompt* out) {
  for (uint32_t i = 0; i < n; ++i) out->push_back(rng.Below(vocab));
}

std::vector<Prompt> RandomTexts(Rng& rng, uint32_t count, uint32_t min_len, uint32_t max_len,
                                uint32_t vocab) {
  std::vector<Prompt> texts(count);
  for (auto& t : texts) AppendRandom(rng, rng.Between(min_len, max_len), vocab, &t);
  return texts;
}

struct Conversation {
  Prompt history;
  uint32_t turns_left = 0;
};

Status CheckRange(const char* name, uint32_t lo, uint32_t hi) {
  if (lo > hi) {
    return Status::InvalidArgument(std::string(name) + ": minimum " + std::to_string(lo) +
                                   " exceeds maximum " + std::to_string(hi));
  }
  return Status::OK();
}

}  // namespace

uint64_t Trace::total_tokens() const {
  uint64_t n = 0;
  for (const auto& r : requests) n += r.size();
  return n;
}

Status ParseTraceLine(std::string_view line, Prompt* prompt) {
  prompt->clear();
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    std::string_view word = line.substr(pos, end - pos);
    uint32_t value = 0;
    auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
    if (word.empty() || ec != std::errc() || ptr != word.data() + word.size()) {
      std::string shown = "an empty field (two spaces in a row?)";
      if (!word.empty()) {
        shown.assign(1, '\'');
        shown.append(word.substr(0, 40));
        shown.push_back('\'');
      }
      return Status::InvalidArgument("token " + std::to_string(prompt->size() + 1) + " is " +
                                     shown + ", not an unsigned 32-bit decimal integer");
    }
    prompt->push_back(value);
    pos = end + 1;
    if (end + 1 == line.size()) {
      return Status::InvalidArgument("trailing space after token " +
                                     std::to_string(prompt->size()));
    }
  }
  return Status::OK();
}

Status ReadTrace(const std::string& path, Trace* trace) {
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot open trace file '" + path + "'");
  trace->requests.clear();
  trace->comments.clear();
  std::string line;
  uint64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '#') {
      trace->comments.push_back(line.substr(line.size() > 1 && line[1] == ' ' ? 2 : 1));
      continue;
    }
    Prompt prompt;
    Status s = ParseTraceLine(line, &prompt);
    if (!s.ok()) return s.WithContext(path + ":" + std::to_string(line_no));
    trace->requests.push_back(std::move(prompt));
  }
  if (in.bad()) return Status::IOError("error reading trace file '" + path + "'");
  return Status::OK();
}

void WriteTrace(const Trace& trace, std::ostream& out) {
  for (const auto& c : trace.comments) out << "# " << c << '\n';
  std::string line;
  char buf[16];
  for (const auto& r : trace.requests) {
    line.clear();
    for (size_t i = 0; i < r.size(); ++i) {
      if (i) line.push_back(' ');
      auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), r[i]);
      line.append(buf, ptr);
    }
    line.push_back('\n');
    out << line;
  }
}

Status TraceOptions::Validate() const {
  if (requests == 0) return Status::InvalidArgument("requests must be positive");
  if (rag_fraction < 0 || rag_fraction > 1) {
    return Status::InvalidArgument("rag fraction " + std::to_string(rag_fraction) +
                                   " is outside [0, 1]");
  }
  if (!(zipf_s >= 0)) return Status::InvalidArgument("zipf exponent must be >= 0");
  if (vocab == 0) return Status::InvalidArgument("vocab must be positive");
  if (system_prompts == 0) return Status::InvalidArgument("system_prompts must be positive");
  if (live_conversations == 0) {
    return Status::InvalidArgument("live_conversations must be positive");
  }
  if (documents == 0) return Status::InvalidArgument("documents must be positive");
  if (docs_max > documents) {
    return Status::InvalidArgument("docs per request (" + std::to_string(docs_max) +
                                   ") exceeds the number of documents (" +
                                   std::to_string(documents) + ")");
  }
  for (Status s : {CheckRange("system tokens", system_min, system_max),
                   CheckRange("turns", turns_min, turns_max),
                   CheckRange("user tokens", user_min, user_max),
                   CheckRange("reply tokens", reply_min, reply_max),
                   CheckRange("document tokens", doc_min, doc_max),
                   CheckRange("docs per request", docs_min, docs_max),
                   CheckRange("question tokens", question_min, question_max)}) {
    if (!s.ok()) return s;
  }
  if (turns_min == 0) return Status::InvalidArgument("turns: minimum must be at least 1");
  return Status::OK();
}

std::string TraceOptions::Describe() const {
  std::ostringstream os;
  os << "kvtier-tracegen seed=" << seed << " requests=" << requests
     << " rag_fraction=" << rag_fraction << " zipf=" << zipf_s << " vocab=" << vocab
     << " | chat: system_prompts=" << system_prompts << " system=" << system_min << ".."
     << system_max << " live=" << live_conversations << " turns=" << turns_min << ".."
     << turns_max << " user=" << user_min << ".." << user_max << " reply=" << reply_min << ".."
     << reply_max << " | rag: documents=" << documents << " doc=" << doc_min << ".." << doc_max
     << " docs=" << docs_min << ".." << docs_max << " question=" << question_min << ".."
     << question_max;
  return os.str();
}

Trace GenerateTrace(const TraceOptions& o) {
  Rng rng(MixSeed(o.seed, 0x7472616365ull));  // "trace"
  Trace trace;
  trace.comments.push_back(o.Describe());
  const std::vector<Prompt> systems =
      RandomTexts(rng, o.system_prompts, o.system_min, o.system_max, o.vocab);
  const std::vector<Prompt> documents =
      RandomTexts(rng, o.documents, o.doc_min, o.doc_max, o.vocab);
  const ZipfSampler pick_system(o.system_prompts, o.zipf_s);
  const ZipfSampler pick_document(o.documents, o.zipf_s);
  std::vector<Conversation> live(o.live_conversations);

  for (uint32_t r = 0; r < o.requests; ++r) {
    Prompt prompt;
    if (rng.Uniform() < o.rag_fraction) {
      prompt = systems[pick_system.Sample(rng)];
      std::vector<uint32_t> chosen;
      const uint32_t k = rng.Between(o.docs_min, o.docs_max);
      while (chosen.size() < k) {
        uint32_t d = pick_document.Sample(rng);
        if (std::find(chosen.begin(), chosen.end(), d) == chosen.end()) chosen.push_back(d);
      }
      for (uint32_t d : chosen) prompt.insert(prompt.end(), documents[d].begin(), documents[d].end());
      AppendRandom(rng, rng.Between(o.question_min, o.question_max), o.vocab, &prompt);
    } else {
      Conversation& c = live[rng.Below(o.live_conversations)];
      if (c.turns_left == 0) {
        c.history = systems[pick_system.Sample(rng)];
        c.turns_left = rng.Between(o.turns_min, o.turns_max);
      }
      AppendRandom(rng, rng.Between(o.user_min, o.user_max), o.vocab, &c.history);
      prompt = c.history;
      // The model's reply joins the history the next turn sends.
      AppendRandom(rng, rng.Between(o.reply_min, o.reply_max), o.vocab, &c.history);
      --c.turns_left;
    }
    trace.requests.push_back(std::move(prompt));
  }
  return trace;
}

}  // namespace kvtier::bench
