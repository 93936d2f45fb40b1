/* A tiny consumer of an installed kvtier (tests/install/run.sh builds it
 * through find_package and through pkg-config): store a block, hit it. */
#include <stdio.h>
#include <string.h>

#include <kvtier/kvtier.h>

int main(void) {
  kvtier_options opt;
  kvtier_cache* cache = NULL;
  kvtier_lease* lease = NULL;
  kvtier_error* err = NULL;
  uint32_t tokens[4] = {1, 2, 3, 4};
  static unsigned char payload[1 * 2 * 4 * 1 * 8 * 2];
  kvtier_block block = {payload, sizeof(payload)};
  kvtier_block got;
  size_t nblocks = 0;

  kvtier_options_init(&opt);
  opt.model = "consumer-model";
  opt.num_layers = 1;
  opt.num_kv_heads = 1;
  opt.head_dim = 8;
  opt.block_size = 4;
  memset(payload, 0x5a, sizeof(payload));
  if (kvtier_open(&opt, &cache, &err) != KVTIER_OK ||
      kvtier_insert_blocks(cache, tokens, 4, 0, &block, 1, &err) != KVTIER_OK ||
      kvtier_lookup(cache, tokens, 4, &lease, &err) != KVTIER_OK ||
      kvtier_lease_info(lease, NULL, &nblocks, NULL, &err) != KVTIER_OK ||
      kvtier_lease_block(lease, 0, &got, &err) != KVTIER_OK) {
    fprintf(stderr, "consumer: %s\n", kvtier_error_message(err));
    return 1;
  }
  if (nblocks != 1 || got.size != sizeof(payload) || memcmp(got.data, payload, got.size) != 0) {
    fprintf(stderr, "consumer: wrong hit\n");
    return 1;
  }
  kvtier_lease_release(lease, NULL);
  kvtier_close(cache, NULL);
  puts("consumer: OK");
  return 0;
}
