//! Quality flags of a prediction: a bit field saying why an estimate deserves less trust
//! than the model's sigma suggests (the model never saw such a cluster, or the image is
//! not what the model expects). A flag never changes the estimate.

use crate::baseline::{CountRateParams, aperture_counts};
use crate::data::Dataset;
use crate::sim::NPIX;
use arch::load::TrainingRange;

/// The redshift lies outside the model's training range.
pub const Z_OUTSIDE_TRAINING: i32 = 1;
/// The exposure lies outside the model's training range (relative tolerance [`EXPOSURE_TOL`]).
pub const EXPOSURE_OUTSIDE_TRAINING: i32 = 2;
/// Some pixel holds 65535 counts: the u16 counts saturated.
pub const SATURATED: i32 = 4;
/// Fewer net 0.5-2 keV counts in the 400 kpc aperture than a detection (50; the baselines'
/// definition of the "detected" subset): the mass rests mostly on the redshift prior.
pub const UNDETECTED: i32 = 8;
/// The cutout reaches past a survey tile's edge: the dataset's `edge_margin_arcsec` (distance
/// from the cluster to the edge of its tile's exposure map, written by `trainer cutout`) is
/// smaller than half the cutout.
pub const NEAR_EDGE: i32 = 16;

/// Every flag: bit, name (as in the `flag_names` column), meaning.
pub const FLAGS: [(i32, &str, &str); 5] = [
    (
        Z_OUTSIDE_TRAINING,
        "z_outside_training",
        "redshift outside the training range",
    ),
    (
        EXPOSURE_OUTSIDE_TRAINING,
        "exposure_outside_training",
        "exposure outside the training range",
    ),
    (SATURATED, "saturated", "a pixel holds 65535 counts"),
    (
        UNDETECTED,
        "undetected",
        "< 50 net 0.5-2 keV counts in the 400 kpc aperture",
    ),
    (
        NEAR_EDGE,
        "near_edge",
        "the cutout reaches past a tile edge",
    ),
];

/// Relative tolerance of the exposure comparison (exposures are stored as f32).
pub const EXPOSURE_TOL: f64 = 1e-3;

/// The names of the bits set in `flags`, joined by `|` (empty for none).
pub fn names(flags: i32) -> String {
    FLAGS
        .iter()
        .filter(|(bit, _, _)| flags & bit != 0)
        .map(|(_, name, _)| *name)
        .collect::<Vec<_>>()
        .join("|")
}

/// The flags of every cluster of `ds`. Without a known training range bits 1 and 2 stay
/// clear, as does bit 2 for a cluster of unknown exposure, and bit 16 without edge data.
pub fn flags(ds: &Dataset, range: Option<&TrainingRange>) -> Vec<i32> {
    let p = CountRateParams::default();
    let net = aperture_counts(ds, &p);
    let half_cutout = NPIX as f64 / 2.0 * ds.pixel_arcsec();
    (0..ds.len())
        .map(|i| {
            let mut f = 0;
            if let Some(r) = range {
                let z = f64::from(ds.redshift[i]);
                if z < r.redshift[0] || z > r.redshift[1] {
                    f |= Z_OUTSIDE_TRAINING;
                }
                if let (Some([lo, hi]), Some(t)) = (r.exposure_s, ds.exposure(i))
                    && (t < lo * (1.0 - EXPOSURE_TOL) || t > hi * (1.0 + EXPOSURE_TOL))
                {
                    f |= EXPOSURE_OUTSIDE_TRAINING;
                }
            }
            if ds.image(i).contains(&u16::MAX) {
                f |= SATURATED;
            }
            if net[i] < p.detection_counts {
                f |= UNDETECTED;
            }
            let near = ds.sky.as_ref().is_some_and(|k| {
                k.edge_margin_arcsec
                    .get(i)
                    .is_some_and(|&m| f64::from(m) < half_cutout)
            });
            if near {
                f |= NEAR_EDGE;
            }
            f
        })
        .collect()
}
