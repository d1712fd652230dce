//! The input every model of this project reads (the data contract of the trainer's
//! datasets): one cluster's photon counts, `u16` `[NBANDS][NPIX][NPIX]`, band-major.

use crate::Shape;

/// Number of energy bands in an observation (the input's channels).
pub const NBANDS: usize = 10;
/// Image side in pixels.
pub const NPIX: usize = 50;
/// u16 values per cluster image.
pub const IMAGE_LEN: usize = NBANDS * NPIX * NPIX;

/// Input shape of every model: the dataset's count cube.
pub const INPUT: Shape = Shape {
    c: NBANDS,
    h: NPIX,
    w: NPIX,
};
