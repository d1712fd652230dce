//! The model variants the firmware can run (cargo features `int8`, `f32`): each loads its
//! blob from flash and runs one measured inference with its activation arena and its
//! convolution scratch **on the stack**, in the frame of [`Variant::infer_measured`], so they
//! count in the peak stack and in no static.
//!
//! The size report attributes the code of this module (into which LTO inlines most of the
//! generated model and the kernels) to the model, together with the `runtime`, `models` and
//! `libm` symbols.

use core::hint::black_box;

use models::edge::{self, ARENA_LEN};
use models::edge_samples as samples;
use runtime::{BlobError, Count, Error, Estimate};

use crate::Board;

/// The compiled-in variants, as printed.
pub const NAMES: &str = match (cfg!(feature = "int8"), cfg!(feature = "f32")) {
    (true, true) => "int8,f32",
    (true, false) => "int8",
    (false, true) => "f32",
    (false, false) => "",
};

/// One model variant.
pub trait Variant: Sized {
    /// Name as printed (`int8`).
    const NAME: &'static str;
    /// The host's results (`[log_mass, sigma]` bit patterns) from `models::edge_samples`.
    const HOST: [[u32; 2]; samples::N];
    /// Validate the blob in flash and borrow it.
    fn load() -> Result<Self, BlobError>;
    /// One inference of `counts` (a u16 or u8 cube) with a fresh arena and scratch on this
    /// function's stack frame; returns the result and what the inference alone took.
    fn infer_measured<B: Board, N: Count>(
        &self,
        board: &B,
        counts: &[N],
        z: f32,
    ) -> (Result<Estimate, Error>, Timing);
}

/// What one inference took.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Timer ticks.
    pub ticks: u64,
    /// Retired instructions, where the core counts them ([`Board::instret`]).
    pub instret: Option<u64>,
}

/// Time `f`: the inputs pass through `black_box` after the first timer read and the result
/// before the second, so the compiler cannot move any of the work out of the window.
#[inline(always)]
pub fn timed<B: Board, R>(board: &B, f: impl FnOnce() -> R) -> (R, Timing) {
    let t0 = board.ticks();
    let i0 = board.instret();
    let f = black_box(f);
    let r = black_box(f());
    let i1 = board.instret();
    let t1 = board.ticks();
    let instret = match (i0, i1) {
        (Some(a), Some(b)) => Some(b.wrapping_sub(a)),
        _ => None,
    };
    (
        r,
        Timing {
            ticks: t1.wrapping_sub(t0),
            instret,
        },
    )
}

/// A variant of `edge`: its type, printed name, host results, blob and arena element.
macro_rules! variant {
    ($(#[$doc:meta])* $feature:literal, $ty:ident, $module:ident, $host:ident, $blob:ident, $zero:expr) => {
        $(#[$doc])*
        #[cfg(feature = $feature)]
        pub struct $ty(edge::$module::Model<'static>);

        #[cfg(feature = $feature)]
        impl Variant for $ty {
            const NAME: &'static str = $feature;
            const HOST: [[u32; 2]; samples::N] = samples::$host;

            #[inline(never)]
            fn load() -> Result<Self, BlobError> {
                edge::$module::Model::new(&models::blobs::$blob.0).map(Self)
            }

            #[inline(never)]
            fn infer_measured<B: Board, N: Count>(
                &self,
                board: &B,
                counts: &[N],
                z: f32,
            ) -> (Result<Estimate, Error>, Timing) {
                let mut arena = [$zero; ARENA_LEN];
                let mut scratch = edge::$module::Scratch::new();
                timed(board, || self.0.infer(counts, &[z], &mut arena, &mut scratch))
            }
        }
    };
}

variant!(
    /// `edge` with int8 weights and activations.
    "int8", Int8, int8, INT8, EDGE_INT8, 0i8
);
variant!(
    /// `edge` with f32 weights and arithmetic.
    "f32", F32, f32, F32, EDGE_F32, 0.0f32
);
