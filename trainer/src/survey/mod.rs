//! Survey data: eROSITA-like event lists, exposure maps and cluster catalogues in, the
//! model's count cubes out ([`cutout`]), and the mocks written as such a survey tile
//! ([`tile`]) to rehearse the path and test it against the simulator exactly.
//!
//! FITS goes through `fitsio` (cfitsio built from source) and every projection through
//! CDS's `wcs` crate; [`sky`] states the pixel and orientation conventions.

pub mod catalog;
pub mod command;
pub mod cutout;
pub mod events;
pub mod fits;
pub mod sky;
pub mod tile;
