// Replaying a request trace through a Cache, as a server would: for each
// request, Lookup its tokens, insert the uncached full blocks (payloads from
// the K/V generator keyed by each block's prefix hash, so a re-insert is
// identical to the first copy), then release the lease. Also the reference
// policies on the same trace (see reference_lru.h).
#ifndef KVTIER_TOOLS_BENCH_REPLAY_H_
#define KVTIER_TOOLS_BENCH_REPLAY_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "kv_data.h"
#include "kvtier/cache.h"
#include "trace.h"

namespace kvtier::bench {

struct ReplayFigures {
  uint64_t requests = 0;
  uint64_t requests_with_hit = 0;
  uint64_t blocks_total = 0;  // full blocks looked up
  uint64_t blocks_hit_memory = 0;
  uint64_t blocks_hit_disk = 0;
  uint64_t blocks_inserted = 0;
  uint64_t blocks_rejected = 0;  // Insert said Full
  uint64_t prefill_tokens_saved = 0;
  double seconds = 0;       // in Lookup + InsertBlocks + release (no payload synthesis)
  double wall_seconds = 0;  // everything, payload synthesis included

  double hit_rate() const;
  nlohmann::json ToJson() const;
};

// Replays `trace` through `cache`. Fails only if an insert fails with
// anything but Full (which is counted: the cache keeps serving).
Status ReplayTrace(Cache* cache, const Trace& trace, const KvDataGenerator& generator,
                   ReplayFigures* out);

struct ReferenceFigures {
  uint64_t blocks_total = 0;
  uint64_t distinct_blocks = 0;  // blocks a trace ever inserts
  uint64_t lru_hits = 0;         // ChainEndLru at the budget
  uint64_t upper_bound_hits = 0;  // every inserted block servable

  double lru_hit_rate() const;
  double upper_bound_hit_rate() const;
};

// Runs both reference policies over `trace` with the namespace's hashes.
ReferenceFigures RunReferences(const Namespace& ns, const Trace& trace, uint64_t budget_blocks);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_REPLAY_H_
