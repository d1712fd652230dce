//! Host side of the cluster-mass project: the eROSITA-like mock generator
//! ([`sim`]), dataset I/O with validation ([`data`]), the two baselines every
//! accuracy figure is compared with ([`baseline`]), shared statistics, CNN
//! training with burn ([`fit`]), catalogues of predicted masses from a trained
//! run or an exported blob ([`predict`]), and FITS binary tables ([`fits_table`]).

pub mod baseline;
pub mod data;
pub mod explain;
pub mod fit;
pub mod fits_table;
pub mod fsutil;
pub mod generate;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod sim;
pub mod stats;
pub mod survey;
