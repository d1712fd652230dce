//! The deterministic train / validation / test split.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Deterministic train / validation / test split of cluster indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices (early stopping, calibration).
    pub val: Vec<usize>,
    /// Held-out test indices (every reported figure).
    pub test: Vec<usize>,
}

impl Splits {
    /// Fractions (train, validation); the rest is test. Default 0.8 / 0.1 / 0.1.
    pub const DEFAULT: (f64, f64) = (0.8, 0.1);

    /// Shuffle 0..n with `seed` and cut by the fractions.
    pub fn new(n: usize, seed: u64, fractions: (f64, f64)) -> Self {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5917));
        let n_train = (n as f64 * fractions.0).round() as usize;
        let n_val = (n as f64 * fractions.1).round() as usize;
        let test = idx.split_off((n_train + n_val).min(n));
        let val = idx.split_off(n_train.min(idx.len()));
        Self {
            train: idx,
            val,
            test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every index lands in exactly one part, in the sizes the fractions ask for, the same
    /// for the same seed and different for another.
    #[test]
    fn splits_partition_the_indices_reproducibly() {
        let s = Splits::new(1000, 7, Splits::DEFAULT);
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (800, 100, 100));
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(s, Splits::new(1000, 7, Splits::DEFAULT));
        assert_ne!(s.test, Splits::new(1000, 8, Splits::DEFAULT).test);
        // Degenerate sizes never panic and never lose an index.
        for n in [0, 1, 2, 3] {
            let s = Splits::new(n, 1, (0.8, 0.1));
            assert_eq!(s.train.len() + s.val.len() + s.test.len(), n);
        }
        let s = Splits::new(10, 1, (1.0, 0.5));
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (10, 0, 0));
    }
}
