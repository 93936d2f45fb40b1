//! Replays the reference engine's prefill flow through kvtier's C ABI:
//! requests that share a system prompt; each one prepares (looks up its
//! prompt), "runs the model" on the uncached tokens (a stand-in that makes
//! deterministic K/V bytes), stores the new blocks and releases the lease.
//! Exits non-zero if a request does not hit what the previous ones stored.
//!
//!   KVTIER_LIB_DIR=build/src/capi cargo run --offline [STORE_DIR]
use kvtier::{Cache, Options};

fn compute_block(tokens: &[u32], block: usize, bs: usize, bytes: usize) -> Vec<u8> {
    let seed = tokens[..(block + 1) * bs].iter().fold(17u32, |h, t| h.wrapping_mul(31).wrapping_add(*t));
    (0..bytes).map(|i| (seed.wrapping_add(i as u32) % 251) as u8).collect()
}

fn main() -> Result<(), kvtier::Error> {
    let mut options = Options::new("example-model", 2, 2, 8);
    options.block_size = 4;
    options.memory_bytes = 1 << 20;
    options.store = std::env::args().nth(1);
    let cache = Cache::open(&options)?;
    let (bs, bytes) = (cache.block_size(), cache.block_bytes());
    let system: Vec<u32> = (1..=16).collect();
    for (request, user) in [vec![100, 101, 102, 103, 104], vec![200, 201, 202, 203, 204, 205, 206]]
        .iter()
        .enumerate()
    {
        let prompt: Vec<u32> = system.iter().chain(user.iter()).copied().collect();
        let session = cache.prepare(&prompt)?; // prepare
        let start = session.uncached_start();
        for i in 0..session.cached().num_blocks() {
            assert_eq!(session.cached().block(i)?, compute_block(&prompt, i, bs, bytes).as_slice());
        }
        let computed: Vec<Vec<u8>> =
            (start / bs..prompt.len() / bs).map(|b| compute_block(&prompt, b, bs, bytes)).collect();
        let refs: Vec<&[u8]> = computed.iter().map(|b| b.as_slice()).collect();
        session.store_blocks(&refs)?; // store
        println!(
            "request {}: {} tokens, {} cached, computed {} blocks",
            request,
            prompt.len(),
            start,
            computed.len()
        );
        if request > 0 && start < system.len() {
            eprintln!("request {} missed the shared system prompt", request);
            std::process::exit(1);
        }
        drop(session); // release
    }
    let stats = cache.stats()?;
    println!("inserts {} memory_hits {} pinned {}", stats.inserts, stats.memory_hits, stats.pinned_blocks);
    assert_eq!(stats.pinned_blocks, 0);
    cache.close()
}
