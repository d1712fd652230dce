//! The yardsticks order as they must: the oracle (true L, T, z) beats the count-rate
//! estimator, which beats predicting the mean mass, on held-out clusters.

use tests::simulator;
use trainer::baseline::{self, CountRateParams};
use trainer::data::Splits;
use trainer::generate::generate_dataset;

#[test]
fn count_rate_lies_between_oracle_and_constant() {
    let ds = generate_dataset(&simulator(17, |_| {}), 4000);
    let splits = Splits::new(ds.len(), 0, Splits::DEFAULT);
    let score = |e: &baseline::Estimate| {
        baseline::accuracy(&e.name, &ds, &e.predicted, &splits.test)
            .unwrap()
            .overall
            .scatter
    };
    let cr = score(&baseline::count_rate(&ds, &splits, &CountRateParams::default()).unwrap());
    let or = score(&baseline::oracle(&ds, &splits).unwrap());
    let k = score(&baseline::constant(&ds, &splits).unwrap());
    assert!(
        or < cr && cr < k,
        "oracle {or}, count rate {cr}, constant {k}"
    );
    // A flat prior over 1.8 dex has a standard deviation of 1.8 / sqrt(12) = 0.52 dex.
    assert!(
        (k - 1.8 / 12f64.sqrt()).abs() < 0.04,
        "constant predictor {k}"
    );
    // Literature (PHYSICS.md): oracle about 0.06-0.08 dex.
    assert!((0.055..0.085).contains(&or), "oracle {or}");
    // Knowing the core-excised luminosity too can only help, and by a lot: it carries
    // the scatter that is not tied to structure (0.09 dex in L, Pratt et al. 2009).
    let or_ce = score(&baseline::oracle_core_excised(&ds, &splits).unwrap());
    assert!(or_ce < 0.85 * or, "oracle + L_ce {or_ce} vs oracle {or}");
}

#[test]
fn splits_are_deterministic_disjoint_and_complete() {
    let a = Splits::new(1000, 3, Splits::DEFAULT);
    assert_eq!(a, Splits::new(1000, 3, Splits::DEFAULT));
    assert_ne!(a, Splits::new(1000, 4, Splits::DEFAULT));
    assert_eq!((a.train.len(), a.val.len(), a.test.len()), (800, 100, 100));
    let mut all: Vec<usize> = a
        .train
        .iter()
        .chain(&a.val)
        .chain(&a.test)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}
