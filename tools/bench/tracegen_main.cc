// kvtier-tracegen: writes a synthetic request trace (multi-turn chat with
// Zipf-popular system prompts, RAG with shared documents) in the plain
// format `kvtier-bench replay --trace` reads.
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "trace.h"

int main(int argc, char** argv) {
  using kvtier::bench::TraceOptions;
  TraceOptions o;
  std::string out_path = "-";
  std::string kind = "mixed";
  CLI::App app{"kvtier-tracegen: synthetic request traces for kvtier-bench replay"};
  app.add_option("-o,--out", out_path, "Output file ('-' = stdout)");
  app.add_option("--kind", kind, "chat, rag or mixed (rag share = --rag-fraction)")
      ->check(CLI::IsMember({"chat", "rag", "mixed"}));
  app.add_option("--seed", o.seed, "Random seed (same seed, same trace)");
  app.add_option("--requests", o.requests, "Number of requests");
  app.add_option("--rag-fraction", o.rag_fraction, "Share of RAG requests when --kind mixed");
  app.add_option("--zipf", o.zipf_s, "Zipf exponent of system prompt / document popularity");
  app.add_option("--vocab", o.vocab, "Token ids are uniform in [0, vocab)");
  app.add_option("--system-prompts", o.system_prompts, "Distinct system prompts");
  app.add_option("--system-min", o.system_min, "Shortest system prompt (tokens)");
  app.add_option("--system-max", o.system_max, "Longest system prompt (tokens)");
  app.add_option("--live", o.live_conversations, "Conversations progressing interleaved");
  app.add_option("--turns-min", o.turns_min, "Fewest turns per conversation");
  app.add_option("--turns-max", o.turns_max, "Most turns per conversation");
  app.add_option("--user-min", o.user_min, "Shortest user message (tokens)");
  app.add_option("--user-max", o.user_max, "Longest user message (tokens)");
  app.add_option("--reply-min", o.reply_min, "Shortest model reply (tokens)");
  app.add_option("--reply-max", o.reply_max, "Longest model reply (tokens)");
  app.add_option("--documents", o.documents, "Distinct RAG documents");
  app.add_option("--doc-min", o.doc_min, "Shortest document (tokens)");
  app.add_option("--doc-max", o.doc_max, "Longest document (tokens)");
  app.add_option("--docs-min", o.docs_min, "Fewest documents per RAG request");
  app.add_option("--docs-max", o.docs_max, "Most documents per RAG request");
  app.add_option("--question-min", o.question_min, "Shortest RAG question (tokens)");
  app.add_option("--question-max", o.question_max, "Longest RAG question (tokens)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and returns 0; every bad argument exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (kind == "chat") o.rag_fraction = 0;
  if (kind == "rag") o.rag_fraction = 1;
  kvtier::Status s = o.Validate();
  if (!s.ok()) {
    std::cerr << "kvtier-tracegen: " << s.ToString() << "\n";
    return 2;
  }
  kvtier::bench::Trace trace = kvtier::bench::GenerateTrace(o);
  if (out_path == "-") {
    kvtier::bench::WriteTrace(trace, std::cout);
    std::cout.flush();
    return std::cout ? 0 : 1;
  }
  std::ofstream out(out_path, std::ios::binary);
  if (!out) {
    std::cerr << "kvtier-tracegen: cannot create '" << out_path << "'\n";
    return 1;
  }
  kvtier::bench::WriteTrace(trace, out);
  out.close();
  if (!out) {
    std::cerr << "kvtier-tracegen: error writing '" << out_path << "'\n";
    return 1;
  }
  std::cerr << "kvtier-tracegen: wrote " << trace.requests.size() << " requests, "
            << trace.total_tokens() << " tokens to " << out_path << "\n";
  return 0;
}
