//! Cross-crate integration tests; see `tests/`. Shared helpers live here.

pub mod models;

use trainer::sim::{SimConfig, Simulator};

/// A simulator with the default physics and the given tweaks.
pub fn simulator(seed: u64, tweak: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    Simulator::check_config(&cfg).expect("valid test configuration");
    Simulator::new(cfg)
}
