//! Accuracy statistics shared by baselines and (later) the CNN: scatter, bias,
//! NMAD, per-bin tables, and a small least-squares solver for linear estimators.

use serde::Serialize;

/// Summary of residuals (predicted minus true log mass, dex).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Summary {
    /// Number of clusters.
    pub n: usize,
    /// Standard deviation of the residuals (the lab's "spread").
    pub scatter: f64,
    /// Mean residual.
    pub bias: f64,
    /// Normalised median absolute deviation, 1.4826 median |r - median r|.
    pub nmad: f64,
    /// Fraction of clusters with |residual| > [`OUTLIER_DEX`].
    pub outlier_frac: f64,
}

/// Residuals beyond this many dex count as outliers.
pub const OUTLIER_DEX: f64 = 0.3;

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

impl Summary {
    /// Summarise residuals.
    pub fn of(residuals: &[f64]) -> Self {
        let n = residuals.len();
        if n == 0 {
            return Self {
                n,
                scatter: f64::NAN,
                bias: f64::NAN,
                nmad: f64::NAN,
                outlier_frac: f64::NAN,
            };
        }
        let bias = residuals.iter().sum::<f64>() / n as f64;
        let var = residuals.iter().map(|r| (r - bias).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        let mut v = residuals.to_vec();
        let med = median(&mut v);
        let mut dev: Vec<f64> = residuals.iter().map(|r| (r - med).abs()).collect();
        let nmad = 1.4826 * median(&mut dev);
        let outlier_frac =
            residuals.iter().filter(|r| r.abs() > OUTLIER_DEX).count() as f64 / n as f64;
        Self {
            n,
            scatter: var.sqrt(),
            bias,
            nmad,
            outlier_frac,
        }
    }
}

/// Residual summaries in bins of some quantity (mass or redshift).
#[derive(Debug, Clone, Serialize)]
pub struct Binned {
    /// Bin edges.
    pub edges: Vec<f64>,
    /// One summary per bin.
    pub bins: Vec<Summary>,
}

impl Binned {
    /// Bin `residuals` by `key` with `edges` (values outside are dropped).
    pub fn new(edges: &[f64], key: &[f64], residuals: &[f64]) -> Self {
        let bins = edges
            .windows(2)
            .map(|w| {
                let r: Vec<f64> = key
                    .iter()
                    .zip(residuals)
                    .filter(|(k, _)| **k >= w[0] && **k < w[1])
                    .map(|(_, r)| *r)
                    .collect();
                Summary::of(&r)
            })
            .collect();
        Self {
            edges: edges.to_vec(),
            bins,
        }
    }
}

/// Ordinary least squares: coefficients b minimising |X b - y|^2, X given as rows.
/// Columns are standardised internally for conditioning; the first column must be
/// the constant 1. Returns `None` if the system is singular.
#[allow(clippy::needless_range_loop)] // index form mirrors the matrix algebra
pub fn least_squares(rows: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let k = rows.first()?.len();
    let n = rows.len() as f64;
    let mean: Vec<f64> = (0..k)
        .map(|j| {
            if j == 0 {
                0.0
            } else {
                rows.iter().map(|r| r[j]).sum::<f64>() / n
            }
        })
        .collect();
    let sd: Vec<f64> = (0..k)
        .map(|j| {
            if j == 0 {
                1.0
            } else {
                (rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n)
                    .sqrt()
                    .max(1e-12)
            }
        })
        .collect();
    let z = |r: &Vec<f64>, j: usize| (r[j] - mean[j]) / sd[j];
    let mut a = vec![vec![0.0; k + 1]; k];
    for (r, yi) in rows.iter().zip(y) {
        for i in 0..k {
            let zi = z(r, i);
            for j in 0..k {
                a[i][j] += zi * z(r, j);
            }
            a[i][k] += zi * yi;
        }
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        for r in 0..k {
            if r != c {
                let f = a[r][c] / a[c][c];
                for j in c..=k {
                    a[r][j] -= f * a[c][j];
                }
            }
        }
    }
    let bz: Vec<f64> = (0..k).map(|i| a[i][k] / a[i][i]).collect();
    // Undo the standardisation.
    let mut b: Vec<f64> = (0..k).map(|j| bz[j] / sd[j]).collect();
    b[0] = bz[0] - (1..k).map(|j| bz[j] * mean[j] / sd[j]).sum::<f64>();
    Some(b)
}

/// Dot product of coefficients and a feature row.
pub fn predict(b: &[f64], row: &[f64]) -> f64 {
    b.iter().zip(row).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_an_exact_plane() {
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![1.0, i as f64, ((i * 7) % 11) as f64 * 1e3])
            .collect();
        let y: Vec<f64> = rows
            .iter()
            .map(|r| 2.5 - 0.5 * r[1] + 3e-3 * r[2])
            .collect();
        let b = least_squares(&rows, &y).unwrap();
        assert!(
            (b[0] - 2.5).abs() < 1e-9 && (b[1] + 0.5).abs() < 1e-9 && (b[2] - 3e-3).abs() < 1e-12,
            "{b:?}"
        );
    }

    #[test]
    fn summary_of_known_residuals() {
        let s = Summary::of(&[-1.0, 0.0, 1.0, 2.0]);
        assert!((s.bias - 0.5).abs() < 1e-12);
        // sample std of (-1,0,1,2) = sqrt(5/3)
        assert!((s.scatter - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // median 0.5, |dev| = 1.5,0.5,0.5,1.5 -> median 1.0
        assert!((s.nmad - 1.4826).abs() < 1e-12);
        assert_eq!(s.outlier_frac, 0.75);
    }
}

/// How well predicted uncertainties describe the residuals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Calibration {
    /// Mean Gaussian negative log-likelihood (nats, per cluster, in dex units).
    pub nll: f64,
    /// Fraction with |residual| < sigma (68.3 % if calibrated).
    pub coverage_1sigma: f64,
    /// Fraction with |residual| < 2 sigma (95.4 % if calibrated).
    pub coverage_2sigma: f64,
    /// Standard deviation of residual / sigma (1 if calibrated).
    pub std_standardized: f64,
}

impl Calibration {
    /// Score residuals against their sigmas.
    pub fn of(residuals: &[f64], sigma: &[f64]) -> Self {
        let n = residuals.len().max(1) as f64;
        let z: Vec<f64> = residuals.iter().zip(sigma).map(|(r, s)| r / s).collect();
        let nll = residuals
            .iter()
            .zip(sigma)
            .map(|(r, s)| s.ln() + 0.5 * (r / s).powi(2) + 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum::<f64>()
            / n;
        let mz = z.iter().sum::<f64>() / n;
        Self {
            nll,
            coverage_1sigma: z.iter().filter(|v| v.abs() < 1.0).count() as f64 / n,
            coverage_2sigma: z.iter().filter(|v| v.abs() < 2.0).count() as f64 / n,
            std_standardized: (z.iter().map(|v| (v - mz).powi(2)).sum::<f64>() / n).sqrt(),
        }
    }
}
