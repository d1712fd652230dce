//! What every generated model shares: the model constants stored at the front of each
//! weight blob ([`Meta`]), the head's conversion of raw outputs into an [`Estimate`]
//! (log mass and calibrated sigma), and the two-ended activation arena ([`ping_pong`]).
//!
//! Generated code (`codegen export`) wires these with the kernels for one architecture;
//! the numbers that depend on training (preprocessing scales, sigma floor and
//! calibration) live in the blob, so a retrained model of the same architecture is a
//! new blob, not new code.

use crate::Error;
use crate::kernels::preprocess::Preprocess;

/// How the predicted sigma is calibrated (stored as a kind code and a value).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SigmaCalibration {
    /// The network's sigma as is.
    None,
    /// sigma = factor x predicted sigma.
    Scale(f32),
    /// sigma = this constant (dex).
    Constant(f32),
}

/// The highest redshift any model may accept ([`Meta::z_range`] must lie inside
/// `[0, MAX_REDSHIFT]`); the trainer refuses data beyond it too.
pub const MAX_REDSHIFT: f32 = 20.0;

/// Largest magnitude accepted for the scale-like model constants (band scales, redshift
/// shift and scale, sigma calibration factor): far above anything a trained model holds,
/// low enough that the preprocessing of any u16 count and accepted redshift stays finite.
pub const MAX_CONSTANT: f32 = 1.0e6;

/// Largest sigma floor or constant sigma accepted, dex.
pub const MAX_SIGMA: f32 = 10.0;

/// Longest exposure any model may record or accept, seconds (about 30 years).
pub const MAX_EXPOSURE_S: f32 = 1.0e9;

/// A scalar input after the redshift (the network's auxiliary inputs), and the code that
/// names it in a blob.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Exposure time in seconds (vignetting-corrected, as the exposure map gives it); the
    /// network sees `log10` of it. Code 1.
    Exposure,
}

impl Quantity {
    /// The code stored in a blob.
    pub const fn code(self) -> u32 {
        match self {
            Quantity::Exposure => 1,
        }
    }

    /// The quantity of a stored code.
    pub fn from_code(code: f32) -> Option<Self> {
        (code == 1.0).then_some(Quantity::Exposure)
    }

    /// Name used in reports, CSV columns and generated code (`exposure_s`).
    pub const fn name(self) -> &'static str {
        match self {
            Quantity::Exposure => "exposure_s",
        }
    }

    /// The flag an estimate carries when this input lies outside the training range.
    pub const fn outside_flag(self) -> Flags {
        match self {
            Quantity::Exposure => Flags::EXPOSURE_OUTSIDE_TRAINING,
        }
    }

    /// The physically valid values of the raw input (finite; exposure in `(0, MAX_EXPOSURE_S]`).
    pub fn valid(self, raw: f32) -> bool {
        match self {
            Quantity::Exposure => raw > 0.0 && raw <= MAX_EXPOSURE_S,
        }
    }

    /// The raw input as the network's feature before shift and scale (`log10 t`).
    pub fn feature(self, raw: f32) -> f32 {
        match self {
            Quantity::Exposure => libm::log10f(raw),
        }
    }
}

/// One auxiliary scalar input after the redshift: five f32 values in tensor 0,
/// `code, shift, scale, min, max`; the network sees `(feature(raw) - shift) * scale`
/// (`feature` is `log10` for the exposure), and `[min, max]` is the raw training range.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtraScalar {
    /// What the input is.
    pub quantity: Quantity,
    /// Subtracted from the feature.
    pub shift: f32,
    /// Multiplies the shifted feature.
    pub scale: f32,
    /// The raw values the model was trained on, `[min, max]` inclusive; values outside
    /// give an estimate flagged with [`Quantity::outside_flag`].
    pub range: [f32; 2],
}

impl ExtraScalar {
    /// Stored values per input.
    pub const LEN: usize = 5;

    /// Read `code, shift, scale, min, max`; `None` for an unknown code, a non-finite value,
    /// a shift or scale larger than [`MAX_CONSTANT`] or a range not physically valid or
    /// inverted.
    pub fn from_slice(v: &[f32]) -> Option<Self> {
        let &[code, shift, scale, min, max] = v else {
            return None;
        };
        let quantity = Quantity::from_code(code)?;
        let small = |x: f32| x.is_finite() && x.abs() <= MAX_CONSTANT;
        (small(shift) && small(scale) && quantity.valid(min) && quantity.valid(max) && min <= max)
            .then_some(Self {
                quantity,
                shift,
                scale,
                range: [min, max],
            })
    }

    /// The stored form.
    pub fn to_array(&self) -> [f32; 5] {
        let [min, max] = self.range;
        [
            self.quantity.code() as f32,
            self.shift,
            self.scale,
            min,
            max,
        ]
    }
}

/// Warnings an [`Estimate`] carries: the inputs lie outside what the model was trained on,
/// so the number is an extrapolation. A bit set; [`Flags::NONE`] for a clean estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No warning.
    pub const NONE: Flags = Flags(0);
    /// The redshift is outside the training range ([`Meta::z_range`]).
    pub const REDSHIFT_OUTSIDE_TRAINING: Flags = Flags(1);
    /// The exposure is outside the training range.
    pub const EXPOSURE_OUTSIDE_TRAINING: Flags = Flags(1 << 1);
    /// Every count of the cube is zero: nothing was observed (a dead detector, a cutout off
    /// the exposed area).
    pub const EMPTY_CUBE: Flags = Flags(1 << 2);
    /// A count reached the largest value of the cube's type (65535 for u16, 255 for u8):
    /// the pixel saturated and the cube under-counts.
    pub const SATURATED: Flags = Flags(1 << 3);
    /// Too few counts for a detection: the net soft-band counts in the aperture are below
    /// the detection threshold ([`Detection`](crate::detect::Detection): 50 net 0.5-2 keV
    /// counts within 400 kpc, the host's "detected" clusters); the mass is extrapolated from
    /// what may be noise. Set only by models that know their observation conventions.
    pub const FEW_COUNTS: Flags = Flags(1 << 4);
    /// Every flag with its name, in bit order.
    pub const ALL: [(Flags, &'static str); 5] = [
        (
            Flags::REDSHIFT_OUTSIDE_TRAINING,
            "redshift_outside_training",
        ),
        (
            Flags::EXPOSURE_OUTSIDE_TRAINING,
            "exposure_outside_training",
        ),
        (Flags::EMPTY_CUBE, "empty_cube"),
        (Flags::SATURATED, "saturated"),
        (Flags::FEW_COUNTS, "few_counts"),
    ];

    /// No flag set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the flags set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::ALL
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }

    /// The bits set that no flag of [`Flags::ALL`] names.
    fn unnamed(self) -> u16 {
        Flags::ALL.iter().fold(self.0, |bits, (f, _)| bits & !f.0)
    }
}

/// The names of the flags set, in bit order, joined by `|` (`redshift_outside_training|saturated`);
/// `none` for a clean estimate; bits no flag names, if any, last in hex.
///
/// ```
/// use runtime::model::Flags;
/// assert_eq!(std::format!("{}", Flags::SATURATED | Flags::EMPTY_CUBE), "empty_cube|saturated");
/// assert_eq!(std::format!("{}", Flags::NONE), "none");
/// assert_eq!(std::format!("{}", Flags::FEW_COUNTS | Flags(0x8000)), "few_counts|0x8000");
/// ```
impl core::fmt::Display for Flags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(name)?;
        }
        match (self.unnamed(), self.names().next()) {
            (0, _) => Ok(()),
            (bits, None) => write!(f, "{bits:#x}"),
            (bits, Some(_)) => write!(f, "|{bits:#x}"),
        }
    }
}

/// As [`Display`](core::fmt::Display): the names of the flags set joined by `|`, `none` if
/// none, unnamed bits last in hex. The names are written as literals, so defmt interns them
/// (the device sends an index, not the text).
#[cfg(feature = "defmt")]
impl defmt::Format for Flags {
    fn format(&self, f: defmt::Formatter<'_>) {
        if self.is_empty() {
            return defmt::write!(f, "none");
        }
        let mut first = true;
        for (flag, name) in Flags::ALL {
            if !self.contains(flag) {
                continue;
            }
            if !first {
                defmt::write!(f, "|");
            }
            first = false;
            match flag {
                Flags::REDSHIFT_OUTSIDE_TRAINING => defmt::write!(f, "redshift_outside_training"),
                Flags::EXPOSURE_OUTSIDE_TRAINING => defmt::write!(f, "exposure_outside_training"),
                Flags::EMPTY_CUBE => defmt::write!(f, "empty_cube"),
                Flags::SATURATED => defmt::write!(f, "saturated"),
                Flags::FEW_COUNTS => defmt::write!(f, "few_counts"),
                // A flag added to `ALL` and not here still prints its name.
                _ => defmt::write!(f, "{=str}", name),
            }
        }
        match (self.unnamed(), first) {
            (0, _) => {}
            (bits, true) => defmt::write!(f, "{=u16:#x}", bits),
            (bits, false) => defmt::write!(f, "|{=u16:#x}", bits),
        }
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// [`Flags::EMPTY_CUBE`] if every count is zero, [`Flags::SATURATED`] if any count is
/// `max` (the largest value of the cube's type).
///
/// ```
/// use runtime::model::{cube_flags, Flags};
/// assert_eq!(cube_flags(&[0u16; 4], u16::MAX), Flags::EMPTY_CUBE);
/// assert_eq!(cube_flags(&[0u16, 3, u16::MAX], u16::MAX), Flags::SATURATED);
/// assert_eq!(cube_flags(&[1u8, 254], u8::MAX), Flags::NONE);
/// ```
pub fn cube_flags<T: Copy + Ord + Default>(counts: &[T], max: T) -> Flags {
    // One pass for both: every count is zero exactly when the largest is, and a count
    // reached `max` exactly when the largest did.
    let top = largest(counts);
    let mut f = Flags::NONE;
    if top == T::default() {
        f |= Flags::EMPTY_CUBE;
    }
    if top == max {
        f |= Flags::SATURATED;
    }
    f
}

/// The largest of `counts` (`T::default()`, zero, for none): a max reduction the compiler
/// vectorises, compiled for AVX2 on x86-64 CPUs that have it (the 25,000 counts of a cube
/// in about 0.3 µs instead of 3 µs for an OR and compare widened to u32 in SSE2).
fn largest<T: Copy + Ord + Default>(counts: &[T]) -> T {
    crate::kernels::simd::largest(counts)
}

/// The model constants: tensor 0 of every blob, `BANDS + 7 + 5 EXTRA` f32 values:
/// `band_scale[BANDS], z_shift, z_scale, sigma_floor, calibration kind (0 none,
/// 1 scale, 2 constant), calibration value, z_min, z_max`, then per auxiliary input after
/// the redshift its [`ExtraScalar`] (`code, shift, scale, min, max`). A model whose only
/// scalar input is the redshift (`EXTRA = 0`) has the layout blobs had before auxiliary
/// inputs existed, so those blobs load unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<const BANDS: usize, const EXTRA: usize = 0> {
    /// Preprocessing of the counts and the redshift.
    pub preprocess: Preprocess<BANDS>,
    /// Smallest sigma, added after the softplus (dex).
    pub sigma_floor: f32,
    /// Calibration of sigma.
    pub calibration: SigmaCalibration,
    /// The redshifts the model was trained on, `[min, max]` inclusive (`codegen export`
    /// records it); [`Meta::scalars`] flags an estimate outside it.
    pub z_range: [f32; 2],
    /// The auxiliary inputs after the redshift, in the network's order.
    pub extra: [ExtraScalar; EXTRA],
}

/// Every field, the preprocessing's inline (its type lives with the kernels).
#[cfg(feature = "defmt")]
impl<const BANDS: usize, const EXTRA: usize> defmt::Format for Meta<BANDS, EXTRA> {
    fn format(&self, f: defmt::Formatter<'_>) {
        let p = &self.preprocess;
        defmt::write!(
            f,
            "Meta {{ band_scale: {=[?]}, z_shift: {=f32}, z_scale: {=f32}, sigma_floor: {=f32}, calibration: {}, z_range: {=[?]}, extra: {=[?]} }}",
            p.band_scale[..],
            p.z_shift,
            p.z_scale,
            self.sigma_floor,
            self.calibration,
            self.z_range[..],
            self.extra[..]
        )
    }
}

/// One cluster's answer.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// log10 M500c / Msun.
    pub log_mass: f32,
    /// Calibrated 1-sigma uncertainty of `log_mass`, dex.
    pub sigma: f32,
    /// Warnings: inputs outside what the model was trained on ([`Flags::NONE`] if none).
    pub flags: Flags,
}

/// `ln(1 + e^x)` without overflow: `max(x, 0) + ln(1 + e^-|x|)`.
///
/// ```
/// use runtime::model::softplus;
/// assert!((softplus(0.0) - core::f32::consts::LN_2).abs() < 1e-7);
/// assert_eq!(softplus(200.0), 200.0);
/// ```
pub fn softplus(x: f32) -> f32 {
    let a = if x > 0.0 { x } else { 0.0 };
    let neg_abs = if x < 0.0 { x } else { -x };
    a + libm::log1pf(libm::expf(neg_abs))
}

impl<const BANDS: usize, const EXTRA: usize> Meta<BANDS, EXTRA> {
    /// Number of f32 values in the stored form.
    pub const LEN: usize = BANDS + 7 + ExtraScalar::LEN * EXTRA;

    /// Number of scalar inputs (the redshift and the auxiliary ones).
    pub const SCALARS: usize = 1 + EXTRA;

    /// Read the stored form; `None` if the length is wrong or a value is not usable: a
    /// non-finite value, a band scale outside `(0, MAX_CONSTANT]`, a redshift shift or scale
    /// larger than [`MAX_CONSTANT`] in magnitude, a sigma floor outside `[0, MAX_SIGMA]`, an
    /// unknown calibration kind or a calibration value outside `(0, MAX_CONSTANT]` (factor)
    /// or `(0, MAX_SIGMA]` (constant), a redshift range not within `[0, MAX_REDSHIFT]` or
    /// with `min > max`, an auxiliary input [`ExtraScalar::from_slice`] refuses.
    pub fn from_slice(v: &[f32]) -> Option<Self> {
        if v.len() != Self::LEN || v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let within = |x: f32, lo: f32, hi: f32| lo <= x && x <= hi;
        let mut band_scale = [0.0f32; BANDS];
        for (dst, src) in band_scale.iter_mut().zip(v) {
            if !(*src > 0.0 && *src <= MAX_CONSTANT) {
                return None;
            }
            *dst = *src;
        }
        let tail = &v[BANDS..];
        let (z_shift, z_scale, floor) = (tail[0], tail[1], tail[2]);
        let (kind, value) = (tail[3], tail[4]);
        let (z_min, z_max) = (tail[5], tail[6]);
        let calibration = if kind == 0.0 {
            SigmaCalibration::None
        } else if kind == 1.0 && value > 0.0 && value <= MAX_CONSTANT {
            SigmaCalibration::Scale(value)
        } else if kind == 2.0 && value > 0.0 && value <= MAX_SIGMA {
            SigmaCalibration::Constant(value)
        } else {
            return None;
        };
        if !(within(z_shift, -MAX_CONSTANT, MAX_CONSTANT)
            && within(z_scale, -MAX_CONSTANT, MAX_CONSTANT)
            && within(floor, 0.0, MAX_SIGMA)
            && within(z_min, 0.0, MAX_REDSHIFT)
            && within(z_max, z_min, MAX_REDSHIFT))
        {
            return None;
        }
        let placeholder = ExtraScalar {
            quantity: Quantity::Exposure,
            shift: 0.0,
            scale: 1.0,
            range: [1.0, 1.0],
        };
        let mut extra = [placeholder; EXTRA];
        for (e, chunk) in extra
            .iter_mut()
            .zip(tail[7..].chunks_exact(ExtraScalar::LEN))
        {
            *e = ExtraScalar::from_slice(chunk)?;
        }
        Some(Self {
            preprocess: Preprocess {
                band_scale,
                z_shift,
                z_scale,
            },
            sigma_floor: floor,
            calibration,
            z_range: [z_min, z_max],
            extra,
        })
    }

    /// The network's scalar inputs for raw `[z, extra...]` (the redshift, then the inputs of
    /// [`Meta::extra`] in order, in physical units): preprocessed into `out`, with the flags
    /// of inputs outside the training ranges. [`Error::BadLength`] unless both slices hold
    /// [`Meta::SCALARS`] values; [`Error::BadScalar`] (with the input's index) for a value
    /// that is not physically valid: not finite, a redshift outside `[0, MAX_REDSHIFT]`, an
    /// exposure outside `(0, MAX_EXPOSURE_S]`.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration, Flags};
    /// use runtime::kernels::preprocess::Preprocess;
    /// use runtime::Error;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::None, z_range: [0.05, 1.3], extra: [] };
    /// let mut out = [0.0];
    /// assert_eq!(m.scalars(&[0.5], &mut out), Ok(Flags::NONE));
    /// assert_eq!(out, [0.5]);
    /// assert_eq!(m.scalars(&[1.31], &mut out), Ok(Flags::REDSHIFT_OUTSIDE_TRAINING));
    /// assert_eq!(m.scalars(&[f32::NAN], &mut out), Err(Error::BadScalar { index: 0 }));
    /// ```
    pub fn scalars(&self, raw: &[f32], out: &mut [f32]) -> Result<Flags, Error> {
        for len in [raw.len(), out.len()] {
            if len != Self::SCALARS {
                return Err(Error::BadLength {
                    expected: Self::SCALARS,
                    got: len,
                });
            }
        }
        let z = raw[0];
        if !(z.is_finite() && (0.0..=MAX_REDSHIFT).contains(&z)) {
            return Err(Error::BadScalar { index: 0 });
        }
        let mut flags = Flags::NONE;
        if !(self.z_range[0] <= z && z <= self.z_range[1]) {
            flags |= Flags::REDSHIFT_OUTSIDE_TRAINING;
        }
        out[0] = self.preprocess.redshift(z)?;
        for (i, e) in self.extra.iter().enumerate() {
            let x = raw[i + 1];
            if !(x.is_finite() && e.quantity.valid(x)) {
                return Err(Error::BadScalar { index: i + 1 });
            }
            if !(e.range[0] <= x && x <= e.range[1]) {
                flags |= e.quantity.outside_flag();
            }
            out[i + 1] = (e.quantity.feature(x) - e.shift) * e.scale;
        }
        Ok(flags)
    }

    /// [`Meta::estimate`] with `flags`, refusing a non-finite result ([`Error::NonFinite`]):
    /// what the generated `infer` returns, so no `Ok` ever holds NaN or infinity.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration, Flags};
    /// use runtime::kernels::preprocess::Preprocess;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::None, z_range: [0.0, 2.0], extra: [] };
    /// assert!(m.output([14.5, 0.0], Flags::NONE).is_ok());
    /// assert!(m.output([f32::NAN, 0.0], Flags::NONE).is_err());
    /// assert!(m.output([14.5, f32::INFINITY], Flags::NONE).is_err());
    /// ```
    pub fn output(&self, raw: [f32; 2], flags: Flags) -> Result<Estimate, Error> {
        let e = Estimate {
            flags,
            ..self.estimate(raw)
        };
        if e.log_mass.is_finite() && e.sigma.is_finite() {
            Ok(e)
        } else {
            Err(Error::NonFinite)
        }
    }

    /// Head outputs (mu, pre-softplus sigma) to an [`Estimate`] without flags:
    /// `sigma = softplus(raw[1]) + floor`, then calibrated.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration};
    /// use runtime::kernels::preprocess::Preprocess;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::Scale(2.0), z_range: [0.0, 2.0], extra: [] };
    /// let e = m.estimate([14.5, 0.0]);
    /// assert_eq!(e.log_mass, 14.5);
    /// assert!((e.sigma - 2.0 * (core::f32::consts::LN_2 + 0.01)).abs() < 1e-6);
    /// ```
    pub fn estimate(&self, raw: [f32; 2]) -> Estimate {
        estimate(raw, self.sigma_floor, self.calibration)
    }
}

/// Head outputs (mu, pre-softplus sigma) to an [`Estimate`] (see [`Meta::estimate`]).
pub fn estimate(raw: [f32; 2], sigma_floor: f32, calibration: SigmaCalibration) -> Estimate {
    let s = softplus(raw[1]) + sigma_floor;
    Estimate {
        flags: Flags::NONE,
        log_mass: raw[0],
        sigma: match calibration {
            SigmaCalibration::None => s,
            SigmaCalibration::Scale(k) => s * k,
            SigmaCalibration::Constant(c) => c,
        },
    }
}

/// The convolutions' scratch and work memory, `N` values of `T` (`i16` for an int8 model,
/// `f32` for f32 and f16 ones), 16-byte aligned: a generated model's `Scratch` (sized by its
/// `SCRATCH_S8` or `SCRATCH_F32`), which the caller owns and passes to `infer`, as CMSIS-NN
/// callers pass the buffer its `get_buffer_size` functions size. Every byte a convolution
/// engine writes besides the arena is in here (im2col columns, the Cortex-M DSP engine's row
/// strip, widened weights and per-channel requantisation records): no kernel keeps a buffer
/// of its own on the stack. Its contents between calls do not matter.
///
/// ```
/// use runtime::model::Scratch;
/// static mut S: Scratch<i16, 4> = Scratch::<i16, 4>::new(); // in .bss, zeroed
/// let mut s = Scratch::<f32, 8>::new();
/// s.0[7] = 1.0;
/// assert_eq!(core::mem::align_of_val(&s), 16);
/// assert_eq!(s.as_mut_slice().len(), 8);
/// ```
#[repr(C, align(16))]
#[derive(Debug, Clone)]
pub struct Scratch<T, const N: usize>(pub [T; N]);

impl<T, const N: usize> Scratch<T, N> {
    /// The values as one slice, what the kernels take.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<const N: usize> Scratch<i16, N> {
    /// Zeroed (a `const fn`, so a `static` holds it in `.bss`).
    pub const fn new() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> Scratch<f32, N> {
    /// Zeroed (a `const fn`, so a `static` holds it in `.bss`).
    pub const fn new() -> Self {
        Self([0.0; N])
    }
}

impl<const N: usize> Default for Scratch<i16, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Default for Scratch<f32, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The first `A` bytes of `buf` as an int8 activation arena: how an `infer_in_place` reuses
/// a u8 cube, once preprocessed, for the activations. [`Error::BadLength`] if `buf` is
/// shorter than `A`.
///
/// ```
/// use runtime::model::arena_in;
/// let mut buf = [0x80u8, 1, 2, 3];
/// let a: &mut [i8; 3] = arena_in(&mut buf).unwrap();
/// assert_eq!(*a, [-128, 1, 2]);
/// a[1] = -1;
/// assert_eq!(buf[1], 0xff);
/// assert!(arena_in::<5>(&mut buf).is_err());
/// ```
pub fn arena_in<const A: usize>(buf: &mut [u8]) -> Result<&mut [i8; A], Error> {
    let got = buf.len();
    let head: &mut [u8; A] = buf
        .get_mut(..A)
        .and_then(|h| h.try_into().ok())
        .ok_or(Error::BadLength { expected: A, got })?;
    // SAFETY: `[i8; A]` and `[u8; A]` have the same size and alignment, and every bit pattern
    // is a valid i8; the exclusive borrow of `buf` passes to the result.
    Ok(unsafe { &mut *(head as *mut [u8; A]).cast::<[i8; A]>() })
}

/// Split a two-ended activation arena for one layer: the input occupies one end
/// (`arena[..in_len]` when `input_at_front`, else `arena[len - in_len..]`) and the
/// output the other, so consecutive layers alternate ends and the arena needs only the
/// largest `in_len + out_len` of the network. An arena too small is an error.
///
/// ```
/// use runtime::model::ping_pong;
/// let mut arena = [1, 2, 3, 0, 0];
/// let (x, y) = ping_pong(&mut arena, 3, 2, true).unwrap();
/// y.copy_from_slice(&[x[0] + x[1], x[2]]);
/// assert_eq!(arena, [1, 2, 3, 3, 3]);
/// assert!(ping_pong(&mut arena, 4, 2, false).is_err());
/// ```
pub fn ping_pong<T>(
    arena: &mut [T],
    in_len: usize,
    out_len: usize,
    input_at_front: bool,
) -> Result<(&[T], &mut [T]), Error> {
    let n = arena.len();
    if in_len.checked_add(out_len).is_none_or(|need| need > n) {
        return Err(Error::BadLength {
            expected: in_len.saturating_add(out_len),
            got: n,
        });
    }
    if input_at_front {
        let (a, b) = arena.split_at_mut(n - out_len);
        Ok((&a[..in_len], b))
    } else {
        let (a, b) = arena.split_at_mut(out_len);
        Ok((&b[b.len() - in_len..], a))
    }
}

/// [`ping_pong`] with a third region for a fused layer's line buffer: the input at one
/// end, the output at the other, and `line_len` elements just before the output (after it
/// when the output is at the front). Needs `in_len + line_len + out_len` elements.
///
/// ```
/// use runtime::model::ping_pong_line;
/// let mut arena = [1, 2, 0, 0, 0, 0];
/// let (x, y, line) = ping_pong_line(&mut arena, 2, 1, 2, true).unwrap();
/// line.copy_from_slice(&[x[0] * 10, x[1] * 10]);
/// y[0] = line[0] + line[1];
/// assert_eq!(arena, [1, 2, 0, 10, 20, 30]);
/// assert!(ping_pong_line(&mut arena, 2, 2, 3, false).is_err());
/// ```
#[allow(clippy::type_complexity)]
pub fn ping_pong_line<T>(
    arena: &mut [T],
    in_len: usize,
    out_len: usize,
    line_len: usize,
    input_at_front: bool,
) -> Result<(&[T], &mut [T], &mut [T]), Error> {
    let (x, y, line) = ping_pong_window(arena, in_len, out_len, line_len, input_at_front)?;
    Ok((x, y, line))
}

/// [`ping_pong_line`] with the input region writable: the window of a convolution that
/// streams its input ([`Conv2d::s8_pooled_streamed`](crate::kernels::conv2d::Conv2d::s8_pooled_streamed)),
/// `window_len` elements at one end.
///
/// ```
/// use runtime::model::ping_pong_window;
/// let mut arena = [0; 6];
/// let (w, y, line) = ping_pong_window(&mut arena, 2, 1, 2, false).unwrap();
/// w.copy_from_slice(&[1, 2]);
/// line.copy_from_slice(&[10, 20]);
/// y[0] = 30;
/// assert_eq!(arena, [30, 10, 20, 0, 1, 2]);
/// ```
#[allow(clippy::type_complexity)]
pub fn ping_pong_window<T>(
    arena: &mut [T],
    window_len: usize,
    out_len: usize,
    line_len: usize,
    input_at_front: bool,
) -> Result<(&mut [T], &mut [T], &mut [T]), Error> {
    let n = arena.len();
    let need = window_len
        .checked_add(out_len)
        .and_then(|v| v.checked_add(line_len));
    if need.is_none_or(|need| need > n) {
        return Err(Error::BadLength {
            expected: window_len.saturating_add(out_len).saturating_add(line_len),
            got: n,
        });
    }
    if input_at_front {
        let (a, y) = arena.split_at_mut(n - out_len);
        let (a, line) = a.split_at_mut(n - out_len - line_len);
        Ok((&mut a[..window_len], y, line))
    } else {
        let (y, b) = arena.split_at_mut(out_len);
        let (line, b) = b.split_at_mut(line_len);
        let at = b.len() - window_len;
        Ok((&mut b[at..], y, line))
    }
}

/// Whether a generated model's `infer` streams its first convolution's input
/// (`infer_streamed`: the preprocessed input is never stored, the arena shrinks to
/// `ARENA_STREAMED`): on every build whose convolutions run a line buffer of rows a call
/// anyway (the Cortex-M engines, NEON, the reference), where streaming costs a few per cent
/// more instructions (`edge` int8 on the Cortex-M4F: 4.6 %, for 5.1 kB less RAM). Not with
/// the x86-64 SIMD engines, which run a whole layer in one call and are faster on the stored
/// input. Either way the estimate has the same bits (int8).
pub const STREAM_INPUT: bool = !crate::kernels::simd::WHOLE_LAYER;

#[cfg(test)]
mod tests {
    use super::*;

    /// The max-reduction flags against the definition (any count nonzero; any count at the
    /// type's maximum), on every length up to 70 and the saturated or only nonzero count at
    /// every position, in u8 and u16 (the vector loops' heads and tails).
    #[test]
    fn cube_flags_match_their_definition_at_every_position() {
        crate::testutil::on_every_engine(|| {
            fn check<T: Copy + Ord + Default + Into<u32>>(c: &[T], max: T) {
                let any = c.iter().any(|v| (*v).into() != 0);
                let top = c.iter().any(|v| (*v).into() == max.into());
                let mut want = Flags::NONE;
                if !any {
                    want |= Flags::EMPTY_CUBE;
                }
                if top {
                    want |= Flags::SATURATED;
                }
                assert_eq!(cube_flags(c, max), want, "{} counts", c.len());
            }
            for n in 0..70 {
                for at in 0..n {
                    for v in [1u16, 77, u16::MAX - 1, u16::MAX] {
                        let mut c = std::vec![0u16; n];
                        c[at] = v;
                        check(&c, u16::MAX);
                        let mut c8 = std::vec![0u8; n];
                        c8[at] = v.min(255) as u8;
                        check(&c8, u8::MAX);
                    }
                }
                check(&std::vec![0u16; n], u16::MAX);
                check(&std::vec![3u8; n], u8::MAX);
            }
            let big: std::vec::Vec<u16> = (0..25_000).map(|i| (i * 7919 % 13) as u16).collect();
            check(&big, u16::MAX);
        });
    }

    #[test]
    fn meta_round_trip_and_rejections() {
        let ok = [2.0f32, 3.0, 0.5, 4.0, 0.005, 1.0, 0.9, 0.05, 1.3];
        let m = Meta::<2>::from_slice(&ok).unwrap();
        assert_eq!(m.preprocess.band_scale, [2.0, 3.0]);
        assert_eq!((m.preprocess.z_shift, m.preprocess.z_scale), (0.5, 4.0));
        assert_eq!(m.calibration, SigmaCalibration::Scale(0.9));
        assert_eq!(m.z_range, [0.05, 1.3]);
        // (index, value): NaN, negative band scale, unknown kind, absurd band scale, absurd z
        // scale, negative or absurd floor, infinite calibration, negative or inverted or
        // too-wide redshift range.
        for (i, bad) in [
            (0, f32::NAN),
            (0, -1.0),
            (5, 7.0),
            (1, 1e30),
            (3, -1e30),
            (4, -0.1),
            (4, 1e9),
            (6, f32::INFINITY),
            (7, -0.01),
            (7, 2.0),
            (8, 100.0),
            (8, f32::MAX),
        ] {
            let mut v = ok;
            v[i] = bad;
            assert!(Meta::<2>::from_slice(&v).is_none(), "{v:?}");
        }
        assert!(Meta::<2>::from_slice(&ok[..7]).is_none());
    }

    /// Redshifts outside the recorded training range give a flagged estimate, whatever
    /// their size up to MAX_REDSHIFT; beyond it and non-finite ones are errors. Inside,
    /// the preprocessed value. The issue-18 cases: 100, 1e30, f32::MAX, 20 (int8 saturated
    /// there); issue 14: z = 5 used to return a confident estimate with no warning.
    #[test]
    fn redshifts_outside_the_training_range_are_flagged_and_invalid_ones_refused() {
        let v = [1.0f32, 0.6, 2.0, 0.005, 0.0, 0.0, 0.05, 1.3];
        let m = Meta::<1>::from_slice(&v).unwrap();
        let mut out = [0.0f32];
        for z in [20.0, 5.0, 1.3001, 0.0499, 0.0] {
            assert_eq!(
                m.scalars(&[z], &mut out),
                Ok(Flags::REDSHIFT_OUTSIDE_TRAINING),
                "{z}"
            );
        }
        for z in [
            100.0,
            1e30,
            f32::MAX,
            20.001,
            -0.001,
            f32::NAN,
            f32::INFINITY,
        ] {
            assert_eq!(
                m.scalars(&[z], &mut out),
                Err(Error::BadScalar { index: 0 }),
                "{z}"
            );
        }
        for (z, want) in [(0.05f32, (0.05f32 - 0.6) * 2.0), (1.3, (1.3 - 0.6) * 2.0)] {
            assert_eq!(m.scalars(&[z], &mut out), Ok(Flags::NONE));
            assert_eq!(out[0], want);
        }
        assert!(matches!(
            m.scalars(&[0.5, 1.0], &mut out),
            Err(Error::BadLength { .. })
        ));
    }

    /// An exposure input: stored form round trip, log10 feature against f64, training
    /// range flagged, invalid exposures refused with their index, invalid records refused.
    #[test]
    fn exposure_inputs_map_flag_and_refuse() {
        let mut v = std::vec![1.0f32, 0.6, 2.0, 0.005, 0.0, 0.0, 0.05, 1.3];
        v.extend([1.0, 2.5, 4.0, 100.0, 3000.0]);
        let m = Meta::<1, 1>::from_slice(&v).unwrap();
        assert_eq!(m.extra[0].to_array(), [1.0, 2.5, 4.0, 100.0, 3000.0]);
        assert_eq!(Meta::<1, 1>::LEN, v.len());
        let mut out = [0.0f32; 2];
        for t in [100.0f32, 640.0, 3000.0] {
            assert_eq!(m.scalars(&[0.3, t], &mut out), Ok(Flags::NONE));
            let want = (f64::from(t).log10() - 2.5) * 4.0;
            assert!((f64::from(out[1]) - want).abs() < 1e-5, "{t}: {}", out[1]);
        }
        assert_eq!(
            m.scalars(&[0.3, 99.0], &mut out),
            Ok(Flags::EXPOSURE_OUTSIDE_TRAINING)
        );
        assert_eq!(
            m.scalars(&[1.5, 1e6], &mut out),
            Ok(Flags::EXPOSURE_OUTSIDE_TRAINING | Flags::REDSHIFT_OUTSIDE_TRAINING)
        );
        for t in [0.0f32, -5.0, f32::NAN, f32::INFINITY, 2e9] {
            assert_eq!(
                m.scalars(&[0.3, t], &mut out),
                Err(Error::BadScalar { index: 1 }),
                "{t}"
            );
        }
        // Unknown code, zero or inverted range, absurd scale; wrong length for EXTRA.
        for (i, bad) in [(8, 0.0f32), (8, 2.0), (11, 0.0), (11, 5000.0), (10, 1e9)] {
            let mut w = v.clone();
            w[i] = bad;
            assert!(Meta::<1, 1>::from_slice(&w).is_none(), "{w:?}");
        }
        assert!(Meta::<1, 0>::from_slice(&v).is_none());
        assert!(Meta::<1, 2>::from_slice(&v).is_none());
    }

    /// Flag names and set operations.
    #[test]
    fn flags_combine_and_name() {
        let f = Flags::SATURATED | Flags::REDSHIFT_OUTSIDE_TRAINING;
        assert!(f.contains(Flags::SATURATED) && !f.contains(Flags::EMPTY_CUBE));
        let names: std::vec::Vec<_> = f.names().collect();
        assert_eq!(names, ["redshift_outside_training", "saturated"]);
        assert!(Flags::NONE.is_empty() && Flags::NONE.names().next().is_none());
        let shown = |f: Flags| std::format!("{f}");
        assert_eq!(shown(f), "redshift_outside_training|saturated");
        assert_eq!(shown(Flags::NONE), "none");
        assert_eq!(shown(Flags(0x20)), "0x20");
        assert_eq!(
            shown(Flags::EMPTY_CUBE | Flags(0x8020)),
            "empty_cube|0x8020"
        );
    }

    /// No Ok output holds NaN or infinity.
    #[test]
    fn non_finite_outputs_are_errors() {
        let v = [1.0f32, 0.6, 2.0, 0.005, 1.0, 2.0, 0.05, 1.3];
        let m = Meta::<1>::from_slice(&v).unwrap();
        let f = Flags::EMPTY_CUBE;
        assert_eq!(m.output([14.0, -3.0], f).map(|e| e.flags), Ok(f));
        for raw in [[f32::NAN, 0.0], [f32::INFINITY, 0.0], [14.0, f32::NAN]] {
            assert_eq!(m.output(raw, f), Err(Error::NonFinite), "{raw:?}");
        }
        // Finite raw outputs whose calibrated sigma overflows.
        assert_eq!(m.output([14.0, f32::MAX], f), Err(Error::NonFinite));
    }

    /// softplus against the f64 closed form over a wide range.
    #[test]
    fn softplus_matches_f64() {
        for i in -400..=400 {
            let x = i as f32 * 0.1;
            let r = (x as f64).exp().ln_1p();
            let r = if x > 30.0 { x as f64 } else { r };
            assert!(
                ((softplus(x) as f64) - r).abs() <= 1e-6 * r.max(1e-30) + 1e-7,
                "{x}"
            );
        }
    }
}
