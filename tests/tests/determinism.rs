//! Same seed, same bytes, whatever the thread count; different seed, different data.

use tests::simulator;
use trainer::generate::generate_npz;

fn bytes_with_threads(threads: usize, seed: u64, dir: &std::path::Path) -> Vec<u8> {
    let sim = simulator(seed, |_| {});
    let path = dir.join(format!("t{threads}-s{seed}.npz"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| generate_npz(&sim, 1100, &path, false))
        .unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn same_seed_same_bytes_with_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let one = bytes_with_threads(1, 42, dir.path());
    let two = bytes_with_threads(2, 42, dir.path());
    assert!(one == two, "datasets differ between 1 and 2 threads");
    let other = bytes_with_threads(2, 43, dir.path());
    assert!(one != other, "a different seed must give different data");
}
