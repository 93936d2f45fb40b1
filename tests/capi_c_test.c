/* A pure-C program against libkvtier.so: kvtier.h compiles as C11 with
 * -Wpedantic -Werror, and the prepare -> store -> lookup -> release flow
 * works through the exported symbols. Exits non-zero with a message on the
 * first failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/kvtier.h"

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                       \
    }                                                                \
  } while (0)

int main(void) {
  kvtier_options opt;
  kvtier_cache* cache = NULL;
  kvtier_lease* lease = NULL;
  kvtier_error* err = NULL;
  uint32_t tokens[10];
  unsigned char payload[2][2 * 2 * 4 * 8 * 2]; /* 2 layers, K+V, bs 4, 1 head x 8, f16 */
  kvtier_block blocks[2];
  kvtier_block got;
  size_t matched = 99, nblocks = 99, from_disk = 99, i;
  kvtier_stats stats;

  CHECK(kvtier_abi_version() == KVTIER_ABI_VERSION);
  kvtier_options_init(&opt);
  opt.num_layers = 2;
  opt.num_kv_heads = 1;
  opt.head_dim = 8;
  opt.block_size = 4;
  opt.memory_bytes = 1 << 20;

  /* No model: InvalidArgument with a message; *cache stays NULL. */
  CHECK(kvtier_open(&opt, &cache, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(cache == NULL && err != NULL);
  CHECK(kvtier_error_code(err) == KVTIER_INVALID_ARGUMENT);
  CHECK(strlen(kvtier_error_message(err)) > 0);
  kvtier_error_free(err);
  err = NULL;

  opt.model = "c-test-model";
  CHECK(kvtier_open(&opt, &cache, &err) == KVTIER_OK && err == NULL);
  CHECK(kvtier_block_size(cache) == 4);
  CHECK(kvtier_block_bytes(cache) == sizeof(payload[0]));

  for (i = 0; i < 10; ++i) tokens[i] = (uint32_t)(1000 + i);
  memset(payload[0], 0x11, sizeof(payload[0]));
  memset(payload[1], 0x22, sizeof(payload[1]));

  /* Prepare: a cold lookup matches nothing. */
  CHECK(kvtier_lookup(cache, tokens, 10, &lease, &err) == KVTIER_OK);
  CHECK(kvtier_lease_info(lease, &matched, &nblocks, &from_disk, &err) == KVTIER_OK);
  CHECK(matched == 0 && nblocks == 0 && from_disk == 0);
  /* Store: blocks 0 and 1 (the trailing 2 tokens are no full block). */
  blocks[0].data = payload[0];
  blocks[0].size = sizeof(payload[0]);
  blocks[1].data = payload[1];
  blocks[1].size = sizeof(payload[1]);
  CHECK(kvtier_insert_blocks(cache, tokens, 10, 0, blocks, 2, &err) == KVTIER_OK);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);

  /* A wrong payload size is refused, naming the sizes. */
  blocks[0].size = 3;
  CHECK(kvtier_insert_blocks(cache, tokens, 10, 0, blocks, 1, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(strstr(kvtier_error_message(err), "3") != NULL);
  kvtier_error_free(err);
  err = NULL;

  /* Hit: both blocks, byte for byte. */
  CHECK(kvtier_lookup(cache, tokens, 10, &lease, &err) == KVTIER_OK);
  CHECK(kvtier_lease_info(lease, &matched, &nblocks, NULL, &err) == KVTIER_OK);
  CHECK(matched == 8 && nblocks == 2);
  for (i = 0; i < 2; ++i) {
    CHECK(kvtier_lease_block(lease, i, &got, &err) == KVTIER_OK);
    CHECK(got.size == sizeof(payload[i]) && memcmp(got.data, payload[i], got.size) == 0);
  }
  CHECK(kvtier_lease_block(lease, 2, &got, &err) == KVTIER_INVALID_ARGUMENT);
  kvtier_error_free(err);
  err = NULL;

  memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  CHECK(kvtier_stats_get(cache, &stats, NULL) == KVTIER_OK);
  CHECK(stats.lookups == 2 && stats.inserts == 2 && stats.memory_hits == 2);
  CHECK(stats.pinned_blocks == 2 && stats.struct_size == sizeof(stats));

  CHECK(kvtier_flush(cache, NULL) == KVTIER_OK);
  CHECK(kvtier_close(cache, NULL) == KVTIER_OK);
  /* The lease outlives its cache. */
  CHECK(kvtier_lease_block(lease, 1, &got, NULL) == KVTIER_OK);
  CHECK(memcmp(got.data, payload[1], got.size) == 0);
  CHECK(kvtier_lease_release(lease, NULL) == KVTIER_OK);
  puts("capi_c_test: OK");
  return 0;
}
