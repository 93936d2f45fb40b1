// Request traces for `kvtier-bench replay`: the plain text format of
// BENCHMARKS.md and a deterministic generator of synthetic traces.
//
// Format: one request per line, the prompt's token ids as unsigned 32-bit
// decimal integers separated by single spaces. Blank lines and lines
// starting with '#' are skipped.
#ifndef KVTIER_TOOLS_BENCH_TRACE_H_
#define KVTIER_TOOLS_BENCH_TRACE_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/layout.h"
#include "kvtier/status.h"

namespace kvtier::bench {

using Prompt = std::vector<Token>;

struct Trace {
  std::vector<Prompt> requests;
  std::vector<std::string> comments;  // '#' lines, without the '#'

  uint64_t total_tokens() const;
};

// Reads a trace file. InvalidArgument naming the line and the offending text
// for anything that is not a u32 decimal separated by single spaces;
// IOError if the file cannot be read.
Status ReadTrace(const std::string& path, Trace* trace);
// Parses one non-comment line (exposed for tests).
Status ParseTraceLine(std::string_view line, Prompt* prompt);

// Writes `trace` in the plain format (comments first, as '# ' lines).
void WriteTrace(const Trace& trace, std::ostream& out);

// The synthetic workload. A trace interleaves two kinds of request:
//  - chat: conversations open with one of `system_prompts` system prompts
//    chosen Zipf(zipf_s); each turn's prompt is the whole conversation so far
//    (system prompt, earlier user turns and replies) plus a new user message;
//    `live_conversations` conversations progress interleaved.
//  - RAG: a system prompt, then `docs_min`..`docs_max` documents chosen
//    Zipf(zipf_s) out of `documents` (in retrieval order, so the same
//    documents in another order share only the system prompt), then a
//    unique question.
// Token ids are uniform in [0, vocab). Lengths are uniform in their ranges.
struct TraceOptions {
  uint64_t seed = 42;
  uint32_t requests = 2000;
  double rag_fraction = 0.3;  // share of requests that are RAG
  double zipf_s = 1.1;
  uint32_t vocab = 151936;

  uint32_t system_prompts = 16;
  uint32_t system_min = 256, system_max = 1536;
  uint32_t live_conversations = 32;
  uint32_t turns_min = 2, turns_max = 10;
  uint32_t user_min = 16, user_max = 256;
  uint32_t reply_min = 32, reply_max = 512;

  uint32_t documents = 128;
  uint32_t doc_min = 256, doc_max = 2048;
  uint32_t docs_min = 1, docs_max = 3;
  uint32_t question_min = 16, question_max = 96;

  // InvalidArgument naming the first inconsistent field.
  Status Validate() const;
  // "chat+rag seed=42 requests=2000 ..." for trace headers and bench output.
  std::string Describe() const;
};

// Generates a trace; the same options give the same trace on every machine.
Trace GenerateTrace(const TraceOptions& options);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_TRACE_H_
