//! CNN training with burn: configuration and presets, the network, the input
//! pipeline, the training loop and the run directory.

pub mod augment;
pub mod commands;
pub mod config;
pub mod depths;
pub mod export;
pub mod net;
pub mod params;
pub mod prep;
pub mod report;
pub mod run;
pub mod scan;
pub mod train;
