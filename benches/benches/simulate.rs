//! Mock-generation throughput: one cluster at a time on one core, and a chunk of
//! clusters on the rayon pool (all cores), in clusters per second.
//!
//! `cargo bench -p benches --bench simulate`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use trainer::generate::simulate_chunk;
use trainer::sim::instrument::Depth;
use trainer::sim::{IMAGE_LEN, SimConfig, Simulator};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulate");
    for depth in [Depth::Erass1, Depth::Erass8, Depth::Pointed] {
        let sim = Simulator::new(SimConfig {
            seed: 1,
            depth,
            ..SimConfig::default()
        });
        g.throughput(Throughput::Elements(1));
        let mut img = vec![0u16; IMAGE_LEN];
        let mut i = 0u64;
        g.bench_function(format!("one_cluster_one_core/{}", depth.name()), |b| {
            b.iter(|| {
                i += 1;
                black_box(sim.observe(i, &mut img))
            })
        });
        let n = 512;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("chunk_all_cores/{}", depth.name()), |b| {
            b.iter(|| black_box(simulate_chunk(&sim, 0, n)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
