// cargo test --offline: the safe API against the real libkvtier.so.
use super::*;

fn options() -> Options {
    let mut o = Options::new("rust-test-model", 2, 2, 8);
    o.block_size = 4;
    o.memory_bytes = 64 * 512;
    o
}

fn payload(cache: &Cache, seed: u8) -> Vec<u8> {
    (0..cache.block_bytes()).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[test]
fn prepare_store_release_makes_the_next_request_hit() {
    let cache = Cache::open(&options()).unwrap();
    assert_eq!(cache.block_bytes(), 512);
    let prompt: Vec<u32> = (0..14).collect();
    let blocks: Vec<Vec<u8>> = (0..4).map(|b| payload(&cache, b)).collect();
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    {
        let session = cache.prepare(&prompt).unwrap();
        assert_eq!(session.uncached_start(), 0);
        // 4 blocks computed, only 3 are full blocks of the prompt.
        session.store_blocks(&refs).unwrap();
    }
    let lease = cache.lookup(&prompt).unwrap();
    assert_eq!(lease.matched_tokens(), 12);
    assert_eq!(lease.num_blocks(), 3);
    for i in 0..3 {
        assert_eq!(lease.block(i).unwrap(), blocks[i].as_slice());
    }
    let err = lease.block(3).unwrap_err();
    assert_eq!(err.code, INVALID_ARGUMENT);
    assert!(err.message.contains("out of range"), "{}", err);
    assert_eq!(cache.stats().unwrap().pinned_blocks, 3);
    drop(lease);
    let stats = cache.stats().unwrap();
    assert_eq!(stats.pinned_blocks, 0);
    assert_eq!(stats.inserts, 3);
    cache.close().unwrap();
}

#[test]
fn dropping_a_lease_unpins_so_an_insert_fits_again() {
    let mut o = options();
    o.memory_bytes = 2 * 512;
    let cache = Cache::open(&o).unwrap();
    let prompt: Vec<u32> = (100..112).collect();
    let p: Vec<Vec<u8>> = (0..3).map(|b| payload(&cache, b)).collect();
    cache.insert_blocks(&prompt, 0, &[&p[0], &p[1]]).unwrap();
    let lease = cache.lookup(&prompt).unwrap();
    let err = cache.insert_blocks(&prompt, 2, &[&p[2]]).unwrap_err();
    assert_eq!(err.code, FULL);
    assert_eq!(err.code_name(), "Full");
    drop(lease);
    cache.insert_blocks(&prompt, 2, &[&p[2]]).unwrap();
}

#[test]
fn errors_carry_the_c_message() {
    let mut o = options();
    o.num_layers = 0;
    let err = Cache::open(&o).err().unwrap();
    assert_eq!(err.code, INVALID_ARGUMENT);
    assert!(err.message.contains("num_layers"), "{}", err);
    let cache = Cache::open(&options()).unwrap();
    let err = cache.insert_blocks(&[1, 2, 3, 4], 0, &[b"short"]).unwrap_err();
    assert!(err.to_string().starts_with("InvalidArgument: "), "{}", err);
    let mut o = options();
    o.model = "bad\0model".into();
    assert_eq!(Cache::open(&o).err().unwrap().code, INVALID_ARGUMENT);
}

#[test]
fn a_lease_outlives_its_cache_and_a_store_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("kvtier-rust-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut o = options();
    o.store = Some(dir.to_str().unwrap().to_string());
    let prompt: Vec<u32> = (7..15).collect();
    let cache = Cache::open(&o).unwrap();
    let p0 = payload(&cache, 9);
    cache.insert_blocks(&prompt, 0, &[&p0]).unwrap();
    let lease = cache.lookup(&prompt).unwrap();
    assert_eq!(Cache::open(&o).err().unwrap().code, BUSY);
    cache.close().unwrap();
    assert_eq!(lease.block(0).unwrap(), p0.as_slice());
    drop(lease);
    let cache = Cache::open(&o).unwrap();
    let lease = cache.lookup(&prompt).unwrap();
    assert_eq!(lease.blocks_from_disk(), 1);
    assert_eq!(lease.block(0).unwrap(), p0.as_slice());
    drop(lease);
    drop(cache);
    std::fs::remove_dir_all(&dir).unwrap();
}
