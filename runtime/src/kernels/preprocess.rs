//! Preprocessing of raw detector counts into the network's input.
//!
//! The device receives what the detector gives (photon counts per band and
//! pixel); the transform the network was trained with is applied here, so the
//! host trainer and the device share one definition: `x = ln(1 + counts) *
//! scale[band]`, and the redshift is mapped as `(z - z_shift) * z_scale`.
//!
//! The counts are `u16` (as the host's cubes) or `u8` (half the RAM on a device; see
//! [`crate::events`]), any [`Count`]: the same counts give the same bits in either type, on
//! every path. Every path reads either type in place (the x86-64 SIMD kernels zero-extend u8
//! counts as they load them): no kernel keeps a buffer of its own.

use crate::Error;
use crate::kernels::conv2d::Rows;
use crate::kernels::pool::{Pool2d, PoolKind, avg_round};
use crate::kernels::simd::Prep;
use crate::quant::QParams;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
}

/// The element type of a count cube: `u16` (the host's and the trainer's, up to 65535 per
/// pixel) or `u8` (half the RAM, up to 255). Sealed: these two only.
///
/// ```
/// use runtime::Count;
/// assert_eq!(<u8 as Count>::MAX, 255);
/// assert_eq!(200u8.get(), 200u16);
/// assert_eq!(<u16 as Count>::as_u16(&[1u16, 2]), Some(&[1u16, 2][..]));
/// assert_eq!(<u8 as Count>::as_u16(&[1u8, 2]), None);
/// ```
pub trait Count:
    sealed::Sealed + Copy + Default + Ord + Into<u32> + core::fmt::Debug + 'static
{
    /// The largest count the type holds: a pixel that reached it is saturated
    /// ([`Flags::SATURATED`](crate::model::Flags::SATURATED)).
    const MAX: Self;
    /// The type's name (`"u8"`, `"u16"`).
    const NAME: &'static str;
    /// The count as u16 (exact).
    fn get(self) -> u16;
    /// `self + 1`; the caller checks `self != MAX` first.
    fn incremented(self) -> Self;
    /// The slice itself if the type is u16, else `None`.
    fn as_u16(counts: &[Self]) -> Option<&[u16]>;
    /// The slice as what it is, u8 or u16 (the x86-64 SIMD kernels read either in place).
    fn slice(counts: &[Self]) -> CountSlice<'_>;
    /// The slice's memory as bytes (native order): what an in-place inference writes its
    /// int8 activations into once it has read the counts there.
    fn bytes_mut(counts: &mut [Self]) -> &mut [u8];
    /// Count `i` of a cube seen as its bytes ([`Count::bytes_mut`]); 0 past the end.
    fn at(bytes: &[u8], i: usize) -> u16;
}

/// A slice of counts as its element type ([`Count::slice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountSlice<'a> {
    /// u8 counts.
    U8(&'a [u8]),
    /// u16 counts.
    U16(&'a [u16]),
}

/// `$body` with `$c` bound to `$counts` (a `&[impl Count]`) as `&[u8]` or `&[u16]`: the body is
/// compiled for both (the x86-64 kernels are generic over the two).
macro_rules! on_counts {
    ($counts:expr, |$c:ident| $body:expr) => {
        match Count::slice($counts) {
            CountSlice::U8($c) => $body,
            CountSlice::U16($c) => $body,
        }
    };
}

impl Count for u16 {
    const MAX: u16 = u16::MAX;
    const NAME: &'static str = "u16";
    #[inline(always)]
    fn get(self) -> u16 {
        self
    }
    #[inline(always)]
    fn incremented(self) -> u16 {
        self.wrapping_add(1)
    }
    #[inline(always)]
    fn as_u16(counts: &[u16]) -> Option<&[u16]> {
        Some(counts)
    }
    #[inline(always)]
    fn slice(counts: &[u16]) -> CountSlice<'_> {
        CountSlice::U16(counts)
    }
    #[inline(always)]
    fn bytes_mut(counts: &mut [u16]) -> &mut [u8] {
        // SAFETY: the same memory, `2 len` bytes, u8 has alignment 1 and every byte value is
        // valid both ways; the exclusive borrow passes to the result.
        unsafe { core::slice::from_raw_parts_mut(counts.as_mut_ptr().cast(), 2 * counts.len()) }
    }
    #[inline(always)]
    fn at(bytes: &[u8], i: usize) -> u16 {
        match (bytes.get(2 * i), bytes.get(2 * i + 1)) {
            (Some(&a), Some(&b)) => u16::from_ne_bytes([a, b]),
            _ => 0,
        }
    }
}

impl Count for u8 {
    const MAX: u8 = u8::MAX;
    const NAME: &'static str = "u8";
    #[inline(always)]
    fn get(self) -> u16 {
        u16::from(self)
    }
    #[inline(always)]
    fn incremented(self) -> u8 {
        self.wrapping_add(1)
    }
    #[inline(always)]
    fn as_u16(_: &[u8]) -> Option<&[u16]> {
        None
    }
    #[inline(always)]
    fn slice(counts: &[u8]) -> CountSlice<'_> {
        CountSlice::U8(counts)
    }
    #[inline(always)]
    fn bytes_mut(counts: &mut [u8]) -> &mut [u8] {
        counts
    }
    #[inline(always)]
    fn at(bytes: &[u8], i: usize) -> u16 {
        bytes.get(i).map_or(0, |&b| u16::from(b))
    }
}

/// Parameters of the count preprocessing, recorded by the trainer in each run
/// and exported by codegen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess<const BANDS: usize> {
    /// Multiplier applied to `ln(1 + counts)` in each band.
    pub band_scale: [f32; BANDS],
    /// Subtracted from the redshift before scaling.
    pub z_shift: f32,
    /// Multiplier applied to the shifted redshift.
    pub z_scale: f32,
}

impl<const BANDS: usize> Preprocess<BANDS> {
    /// The identity-scaled transform: `ln(1 + counts)` in every band, raw z.
    pub const fn log1p() -> Self {
        Self {
            band_scale: [1.0; BANDS],
            z_shift: 0.0,
            z_scale: 1.0,
        }
    }

    /// Transform a band-major cube (`[band][y][x]`) of raw counts into `out`.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// let p = Preprocess::<2> { band_scale: [1.0, 0.5], z_shift: 0.0, z_scale: 1.0 };
    /// let counts = [0u16, 1, 3, 7];          // two bands of two pixels
    /// let mut out = [0.0f32; 4];
    /// p.counts_f32(&counts, &mut out).unwrap();
    /// assert_eq!(out[0], 0.0);
    /// assert!((out[1] - core::f32::consts::LN_2).abs() < 1e-6);
    /// assert!((out[3] - 0.5 * 8f32.ln()).abs() < 1e-6);
    /// ```
    pub fn counts_f32<N: Count>(&self, counts: &[N], out: &mut [f32]) -> Result<(), Error> {
        let plane = self.plane(counts.len(), out.len())?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.value(counts, plane, i);
        }
        Ok(())
    }

    /// Preprocess and quantise to int8 with the input tensor's parameters `q`.
    ///
    /// On [`Path::Avx512`](crate::kernels::simd::Path::Avx512) each band's counts below 256 are looked up in a table of their
    /// quantised inputs built with vector arithmetic (the same bits); the result is
    /// identical on every path.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// use runtime::quant::QParams;
    /// let p = Preprocess::<1>::log1p();
    /// let q = QParams { scale: 0.05, zero_point: -128 };
    /// let mut out = [0i8; 2];
    /// p.counts_s8(&[0u16, 1], q, &mut out).unwrap();
    /// assert_eq!(out, [-128, -128 + 14]); // ln 2 / 0.05 = 13.9
    /// p.counts_s8(&[0u8, 1], q, &mut out).unwrap(); // a u8 cube: the same
    /// assert_eq!(out, [-128, -128 + 14]);
    /// ```
    pub fn counts_s8<N: Count>(
        &self,
        counts: &[N],
        q: QParams,
        out: &mut [i8],
    ) -> Result<(), Error> {
        let plane = self.plane(counts.len(), out.len())?;
        if plane == 0 {
            return Ok(());
        }
        if let Some(e) = Prep::s8() {
            for (b, (c, o)) in counts
                .chunks_exact(plane)
                .zip(out.chunks_exact_mut(plane))
                .enumerate()
            {
                let scale = self.band_scale[b];
                let slow = |n| q.quantize(log1p_count(n) * scale);
                // `c` and `o` have the same length (`plane`).
                on_counts!(c, |c| e.quantize_s8(c, scale, q, o, slow));
            }
            return Ok(());
        }
        for (b, (c, o)) in counts
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            let memo = Memo::new(self.band_scale[b], q);
            for (x, y) in c.iter().zip(o) {
                *y = memo.get(x.get());
            }
        }
        Ok(())
    }

    /// Preprocessing fused with the first `K x K` pooling of an `H x W` cube: each
    /// window is preprocessed as it is pooled, so the full-resolution input is never
    /// stored. Identical to [`Preprocess::counts_f32`] followed by
    /// [`Pool2d::max_f32`]/[`Pool2d::avg_f32`], bit for bit on every path (on
    /// [`Path::Avx512`](crate::kernels::simd::Path::Avx512), `K = 2` runs 16 windows at a time).
    pub fn pooled_f32<N: Count, const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        counts: &[N],
        out: &mut [f32],
    ) -> Result<(), Error> {
        Pool2d::<BANDS, H, W, K>::check_lengths(counts.len(), out.len())?;
        if K == 2
            && let Some(e) = Prep::f32()
        {
            self.pooled2_f32_simd::<N, H, W, K>(e, kind, counts, out);
            return Ok(());
        }
        let plane = H * W;
        let get = |i: usize| self.value(counts, plane, i);
        match kind {
            PoolKind::Max => Pool2d::<BANDS, H, W, K>::each_with(get, out, |it| {
                it.fold(f32::NEG_INFINITY, f32::max)
            }),
            PoolKind::Avg => {
                let inv = 1.0 / (K * K) as f32;
                Pool2d::<BANDS, H, W, K>::each_with(get, out, |it| {
                    it.fold(0.0f32, |a, v| a + v) * inv
                })
            }
        }
        Ok(())
    }

    /// Preprocessing, int8 quantisation with `q` and the first `K x K` pooling, fused:
    /// identical to [`Preprocess::counts_s8`] followed by [`Pool2d::max_s8`]/[`Pool2d::avg_s8`]
    /// on every path (on [`Path::Avx512`](crate::kernels::simd::Path::Avx512), `K = 2` runs 64 counts of a row pair at a time).
    pub fn pooled_s8<N: Count, const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        counts: &[N],
        q: QParams,
        out: &mut [i8],
    ) -> Result<(), Error> {
        Pool2d::<BANDS, H, W, K>::check_lengths(counts.len(), out.len())?;
        if let Some(e) = Prep::s8() {
            self.pooled_s8_simd::<N, H, W, K>(e, kind, counts, q, out);
            return Ok(());
        }
        // Band by band, each count's quantised input memoised (a pure function of the count).
        let per_band = Pool2d::<1, H, W, K>::OUT_LEN;
        for (b, (c, o)) in counts
            .chunks_exact(H * W)
            .zip(out.chunks_exact_mut(per_band))
            .enumerate()
        {
            let memo = Memo::new(self.band_scale[b], q);
            let get = |i: usize| memo.get(c[i].get());
            match kind {
                PoolKind::Max => {
                    Pool2d::<1, H, W, K>::each_with(get, o, |it| it.fold(i8::MIN, i8::max))
                }
                PoolKind::Avg => {
                    let n = (K * K) as i32;
                    Pool2d::<1, H, W, K>::each_with(get, o, |it| {
                        avg_round(it.map(i32::from).sum(), n)
                    })
                }
            }
        }
        Ok(())
    }

    /// [`Preprocess::pooled_f32`] with `K == 2` on the engine `e`, lengths checked: per band
    /// a 256-entry table of inputs and the engine's 2x2 pooling; rows with a count of 256 or
    /// more are redone by the reference's window loop.
    fn pooled2_f32_simd<N: Count, const H: usize, const W: usize, const K: usize>(
        &self,
        e: Prep,
        kind: PoolKind,
        counts: &[N],
        out: &mut [f32],
    ) {
        let per_band = Pool2d::<1, H, W, K>::OUT_LEN;
        let max = kind == PoolKind::Max;
        let inv = 1.0 / (K * K) as f32;
        for (b, (c, o)) in counts
            .chunks_exact(H * W)
            .zip(out.chunks_exact_mut(per_band))
            .enumerate()
        {
            let scale = self.band_scale[b];
            let get = |i: usize| log1p_count(c[i].get()) * scale;
            let redo = |oy: usize, row: &mut [f32]| match kind {
                PoolKind::Max => Pool2d::<1, H, W, K>::row_with(&get, 0, oy, row, |it| {
                    it.fold(f32::NEG_INFINITY, f32::max)
                }),
                PoolKind::Avg => Pool2d::<1, H, W, K>::row_with(&get, 0, oy, row, |it| {
                    it.fold(0.0f32, |a, v| a + v) * inv
                }),
            };
            let mut table = [0.0f32; 256];
            e.f32_table(scale, max, &mut table);
            let ow = W / 2;
            // SAFETY: with K = 2 (so OW = W / 2 >= 1 as W >= K) the band's H W >= 2 OH W
            // counts hold every row pair and `o` the OH rows of OW outputs.
            on_counts!(c, |plane| unsafe {
                e.pool2_f32(plane, W, ow, &table, max, o, redo)
            });
        }
    }

    /// [`Preprocess::pooled_s8`] on the engine `e`, lengths checked: per band the engine's
    /// 2x2 pooling for `K == 2` (rows with a count of 256 or more redone by the reference's
    /// window loop with the kernel's table), or that loop with the engine's table of
    /// quantised inputs for other windows.
    fn pooled_s8_simd<N: Count, const H: usize, const W: usize, const K: usize>(
        &self,
        e: Prep,
        kind: PoolKind,
        counts: &[N],
        q: QParams,
        out: &mut [i8],
    ) {
        let per_band = Pool2d::<1, H, W, K>::OUT_LEN;
        let n = (K * K) as i32;
        for (b, (c, o)) in counts
            .chunks_exact(H * W)
            .zip(out.chunks_exact_mut(per_band))
            .enumerate()
        {
            let scale = self.band_scale[b];
            // Counts below 256 through the table, larger ones computed.
            let value = |table: &[i8; 256], n: u16| match table.get(usize::from(n)) {
                Some(v) => *v,
                None => q.quantize(log1p_count(n) * scale),
            };
            if K == 2 {
                let redo = |oy: usize, row: &mut [i8], table: &[i8; 256]| {
                    let get = |i: usize| value(table, c[i].get());
                    type P<const H: usize, const W: usize, const K: usize> = Pool2d<1, H, W, K>;
                    match kind {
                        PoolKind::Max => {
                            P::<H, W, K>::row_with(&get, 0, oy, row, |it| it.fold(i8::MIN, i8::max))
                        }
                        PoolKind::Avg => P::<H, W, K>::row_with(&get, 0, oy, row, |it| {
                            avg_round(it.map(i32::from).sum(), n)
                        }),
                    }
                };
                let max = kind == PoolKind::Max;
                let ow = W / 2;
                // SAFETY: with K = 2 (so OW = W / 2 >= 1 as W >= K) the band's H W >= 2 OH W
                // counts hold every row pair and `o` the OH rows of OW outputs.
                on_counts!(c, |plane| unsafe {
                    e.pool2_s8(plane, W, ow, scale, q, max, o, redo)
                });
            } else {
                let mut table = [0i8; 256];
                e.quant_table(scale, q, &mut table);
                let get = |i: usize| value(&table, c[i].get());
                match kind {
                    PoolKind::Max => {
                        Pool2d::<1, H, W, K>::each_with(get, o, |it| it.fold(i8::MIN, i8::max))
                    }
                    PoolKind::Avg => Pool2d::<1, H, W, K>::each_with(get, o, |it| {
                        avg_round(it.map(i32::from).sum(), n)
                    }),
                }
            }
        }
    }

    /// The network input for element `i` of a band-major cube with `plane` pixels per band.
    #[inline(always)]
    fn value<N: Count>(&self, counts: &[N], plane: usize, i: usize) -> f32 {
        let scale = self.band_scale.get(i / plane).copied().unwrap_or(0.0);
        log1p_count(counts[i].get()) * scale
    }

    /// Check lengths; the plane size.
    fn plane(&self, counts: usize, out: usize) -> Result<usize, Error> {
        if out != counts {
            return Err(Error::BadLength {
                expected: counts,
                got: out,
            });
        }
        if BANDS == 0 || !counts.is_multiple_of(BANDS) {
            return Err(Error::BadLength {
                expected: BANDS,
                got: counts,
            });
        }
        Ok(counts / BANDS)
    }

    /// [`Preprocess::counts_s8`] of a u8 or u16 cube in place: the quantised inputs written,
    /// as `i8` bits, to the front of the cube's bytes ([`Count::bytes_mut`]; for u8 each
    /// count is replaced by its input), read back e.g. through
    /// [`arena_in`](crate::model::arena_in). The same values as `counts_s8` on every path
    /// (this one is the scalar loop everywhere). In place is safe because input `i` is
    /// written to byte `i`, which lies in count `i` or below, after count `i` is read.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// use runtime::quant::QParams;
    /// let p = Preprocess::<1>::log1p();
    /// let q = QParams { scale: 0.05, zero_point: -128 };
    /// let mut cube = [0u8, 1];
    /// p.counts_s8_in_place(&mut cube, q).unwrap();
    /// assert_eq!(cube.map(|b| b as i8), [-128, -128 + 14]);
    /// ```
    pub fn counts_s8_in_place(&self, cube: &mut [impl Count], q: QParams) -> Result<(), Error> {
        fn run<N: Count, const B: usize>(
            p: &Preprocess<B>,
            cube: &mut [N],
            q: QParams,
        ) -> Result<(), Error> {
            let plane = p.plane(cube.len(), cube.len())?;
            if plane == 0 {
                return Ok(());
            }
            let bytes = N::bytes_mut(cube);
            for b in 0..B {
                let memo = Memo::new(p.band_scale[b], q);
                for i in b * plane..(b + 1) * plane {
                    let v = memo.get(N::at(bytes, i));
                    bytes[i] = v as u8;
                }
            }
            Ok(())
        }
        run(self, cube, q)
    }

    /// [`Preprocess::pooled_s8`] of a u8 or u16 cube in place: the `BANDS x H/K x W/K`
    /// pooled, quantised inputs written, as `i8` bits, to the front of the cube's bytes
    /// ([`Count::bytes_mut`]; the rest is left as it was). The same values as `pooled_s8` on
    /// every path (this one is the scalar window loop everywhere). In place is safe because
    /// output `(b, oy, ox)`, at byte `(b OH + oy) OW + ox`, is written after its window is
    /// read and never lies beyond (in a count below) the window's first count
    /// `(b H + oy K) W + ox K`, which lies below every count a later window reads.
    ///
    /// ```
    /// use runtime::kernels::pool::PoolKind;
    /// use runtime::kernels::preprocess::Preprocess;
    /// use runtime::quant::QParams;
    /// let p = Preprocess::<1>::log1p();
    /// let q = QParams { scale: 0.05, zero_point: -128 };
    /// let mut cube = [1u8, 1, 1, 1, 0, 0, 0, 0];        // 1 band, 2 x 4, pooled 2 x 2
    /// let mut want = [0i8; 2];
    /// p.pooled_s8::<_, 2, 4, 2>(PoolKind::Avg, &cube, q, &mut want).unwrap();
    /// p.pooled_s8_in_place::<2, 4, 2>(PoolKind::Avg, &mut cube, q).unwrap();
    /// assert_eq!([cube[0] as i8, cube[1] as i8], want);
    /// ```
    pub fn pooled_s8_in_place<const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        cube: &mut [impl Count],
        q: QParams,
    ) -> Result<(), Error> {
        fn run<N: Count, const B: usize, const H: usize, const W: usize, const K: usize>(
            p: &Preprocess<B>,
            kind: PoolKind,
            cube: &mut [N],
            q: QParams,
        ) -> Result<(), Error> {
            type P<const B: usize, const H: usize, const W: usize, const K: usize> =
                Pool2d<B, H, W, K>;
            P::<B, H, W, K>::check_lengths(cube.len(), P::<B, H, W, K>::OUT_LEN)?;
            let (oh, ow) = (P::<B, H, W, K>::OH, P::<B, H, W, K>::OW);
            let n = (K * K) as i32;
            let bytes = N::bytes_mut(cube);
            for b in 0..B {
                let memo = Memo::new(p.band_scale[b], q);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let base = (b * H + oy * K) * W + ox * K;
                        let mut window =
                            (0..K * K).map(|t| memo.get(N::at(bytes, base + (t / K) * W + t % K)));
                        let v = match kind {
                            PoolKind::Max => window.by_ref().fold(i8::MIN, i8::max),
                            PoolKind::Avg => avg_round(window.by_ref().map(i32::from).sum(), n),
                        };
                        if let Some(o) = bytes.get_mut((b * oh + oy) * ow + ox) {
                            *o = v as u8;
                        }
                    }
                }
            }
            Ok(())
        }
        run::<_, BANDS, H, W, K>(self, kind, cube, q)
    }

    /// Map a redshift to the network's scalar input; rejects NaN, infinities and z < 0.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// let p = Preprocess::<10> { z_shift: 0.5, z_scale: 2.0, ..Preprocess::log1p() };
    /// assert_eq!(p.redshift(1.0), Ok(1.0));
    /// assert!(p.redshift(f32::NAN).is_err());
    /// ```
    pub fn redshift(&self, z: f32) -> Result<f32, Error> {
        if !z.is_finite() || z < 0.0 {
            return Err(Error::BadScalar { index: 0 });
        }
        Ok((z - self.z_shift) * self.z_scale)
    }
}

/// Quantised network input of one band, `q.quantize(ln(1 + n) * scale)`, memoised for
/// counts below 256 (the common case: computing it costs a division and a rounding).
struct Memo {
    scale: f32,
    q: QParams,
    table: [core::cell::Cell<i16>; 256],
}

impl Memo {
    const EMPTY: i16 = i16::MIN;

    fn new(scale: f32, q: QParams) -> Self {
        Self {
            scale,
            q,
            table: [const { core::cell::Cell::new(Self::EMPTY) }; 256],
        }
    }

    #[inline(always)]
    fn get(&self, n: u16) -> i8 {
        let compute = || self.q.quantize(log1p_count(n) * self.scale);
        match self.table.get(usize::from(n)) {
            Some(slot) => match slot.get() {
                Self::EMPTY => {
                    let v = compute();
                    slot.set(i16::from(v));
                    v
                }
                v => v as i8,
            },
            None => compute(),
        }
    }
}

/// `ln(1 + n)` as `libm::log1pf` computes it, looked up for the common small counts.
#[inline(always)]
pub fn log1p_count(n: u16) -> f32 {
    match super::log1p_table::LOG1P_BITS.get(usize::from(n)) {
        Some(bits) => f32::from_bits(*bits),
        None => libm::log1pf(f32::from(n)),
    }
}

/// The fused first step on the pooling's side: preprocess (and quantise) raw counts and pool
/// them in one pass, as [`Preprocess::pooled_f32`] / [`Preprocess::pooled_s8`]. Here rather
/// than in `pool`, which then needs nothing of the preprocessing (no module cycle).
impl<const C: usize, const IH: usize, const IW: usize, const K: usize> Pool2d<C, IH, IW, K> {
    /// Preprocess raw counts (`C` bands of `IH x IW`) and max-pool them in one pass
    /// ([`Preprocess::pooled_f32`](crate::kernels::preprocess::Preprocess::pooled_f32)).
    pub fn max_counts_f32<N: Count>(
        p: &Preprocess<C>,
        counts: &[N],
        out: &mut [f32],
    ) -> Result<(), Error> {
        p.pooled_f32::<N, IH, IW, K>(PoolKind::Max, counts, out)
    }

    /// Preprocess raw counts and average-pool them in one pass.
    pub fn avg_counts_f32<N: Count>(
        p: &Preprocess<C>,
        counts: &[N],
        out: &mut [f32],
    ) -> Result<(), Error> {
        p.pooled_f32::<N, IH, IW, K>(PoolKind::Avg, counts, out)
    }

    /// Preprocess, quantise with `q` and max-pool raw counts in one pass.
    pub fn max_counts_s8<N: Count>(
        p: &Preprocess<C>,
        counts: &[N],
        q: QParams,
        out: &mut [i8],
    ) -> Result<(), Error> {
        p.pooled_s8::<N, IH, IW, K>(PoolKind::Max, counts, q, out)
    }

    /// Preprocess, quantise with `q` and average-pool raw counts in one pass.
    pub fn avg_counts_s8<N: Count>(
        p: &Preprocess<C>,
        counts: &[N],
        q: QParams,
        out: &mut [i8],
    ) -> Result<(), Error> {
        p.pooled_s8::<N, IH, IW, K>(PoolKind::Avg, counts, q, out)
    }

    /// [`Pool2d::max_counts_s8`] of a u8 or u16 cube in place, the outputs at the front of
    /// its bytes ([`Preprocess::pooled_s8_in_place`]).
    pub fn max_counts_s8_in_place(
        p: &Preprocess<C>,
        cube: &mut [impl Count],
        q: QParams,
    ) -> Result<(), Error> {
        p.pooled_s8_in_place::<IH, IW, K>(PoolKind::Max, cube, q)
    }

    /// [`Pool2d::avg_counts_s8`] of a u8 or u16 cube in place, the outputs at the front of
    /// its bytes ([`Preprocess::pooled_s8_in_place`]).
    pub fn avg_counts_s8_in_place(
        p: &Preprocess<C>,
        cube: &mut [impl Count],
        q: QParams,
    ) -> Result<(), Error> {
        p.pooled_s8_in_place::<IH, IW, K>(PoolKind::Avg, cube, q)
    }

    /// Check a streamed request ([`Rows`]) against this shape, the cube and the window.
    fn check_rows(counts: usize, r: Rows, window: usize) -> Result<(), Error> {
        Self::check_lengths(counts, Self::OUT_LEN)?;
        if r.y0 + r.n > Self::OH || r.at + r.n > r.rows {
            return Err(Error::BadLength {
                expected: Self::OH,
                got: r.y0 + r.n,
            });
        }
        if window != C * r.rows * Self::OW {
            return Err(Error::BadLength {
                expected: C * r.rows * Self::OW,
                got: window,
            });
        }
        Ok(())
    }

    /// Rows `r.y0..r.y0 + r.n` of [`Pool2d::avg_counts_s8`] (`kind` `Avg`) or
    /// [`Pool2d::max_counts_s8`] (`Max`) of a cube, written into a streamed convolution's
    /// input window ([`Conv2d::s8_pooled_streamed`](crate::kernels::conv2d::Conv2d::s8_pooled_streamed)):
    /// the same values, bit for bit, as those rows of the whole output on every path (this
    /// is the reference's loop, each band's quantised inputs memoised per call).
    pub fn counts_s8_rows<N: Count>(
        p: &Preprocess<C>,
        kind: PoolKind,
        counts: &[N],
        q: QParams,
        r: Rows,
        window: &mut [i8],
    ) -> Result<(), Error> {
        Self::check_rows(counts.len(), r, window.len())?;
        let (plane, ow, n) = (IH * IW, Self::OW, (K * K) as i32);
        for (b, c) in counts.chunks_exact(plane).enumerate() {
            let memo = Memo::new(p.band_scale[b], q);
            let get = |i: usize| memo.get(c[i].get());
            for k in 0..r.n {
                let row = &mut window[(b * r.rows + r.at + k) * ow..][..ow];
                let oy = r.y0 + k;
                match kind {
                    PoolKind::Max => Pool2d::<1, IH, IW, K>::row_with(&get, 0, oy, row, |it| {
                        it.fold(i8::MIN, i8::max)
                    }),
                    PoolKind::Avg => Pool2d::<1, IH, IW, K>::row_with(&get, 0, oy, row, |it| {
                        avg_round(it.map(i32::from).sum(), n)
                    }),
                }
            }
        }
        Ok(())
    }

    /// Float twin of [`Pool2d::counts_s8_rows`]: rows of [`Pool2d::avg_counts_f32`] /
    /// [`Pool2d::max_counts_f32`] into a window of
    /// [`Conv2d::f32_pooled_streamed`](crate::kernels::conv2d::Conv2d::f32_pooled_streamed),
    /// bit for bit those rows of the whole output.
    pub fn counts_f32_rows<N: Count>(
        p: &Preprocess<C>,
        kind: PoolKind,
        counts: &[N],
        r: Rows,
        window: &mut [f32],
    ) -> Result<(), Error> {
        Self::check_rows(counts.len(), r, window.len())?;
        let (plane, ow, inv) = (IH * IW, Self::OW, 1.0 / (K * K) as f32);
        for (b, c) in counts.chunks_exact(plane).enumerate() {
            let scale = p.band_scale[b];
            let get = |i: usize| log1p_count(c[i].get()) * scale;
            for k in 0..r.n {
                let row = &mut window[(b * r.rows + r.at + k) * ow..][..ow];
                let oy = r.y0 + k;
                match kind {
                    PoolKind::Max => Pool2d::<1, IH, IW, K>::row_with(&get, 0, oy, row, |it| {
                        it.fold(f32::NEG_INFINITY, f32::max)
                    }),
                    PoolKind::Avg => Pool2d::<1, IH, IW, K>::row_with(&get, 0, oy, row, |it| {
                        it.fold(0.0f32, |a, v| a + v) * inv
                    }),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn table_is_libm() {
        for n in 0..=u16::MAX {
            assert_eq!(
                log1p_count(n).to_bits(),
                libm::log1pf(f32::from(n)).to_bits(),
                "{n}"
            );
        }
    }

    use super::*;

    #[test]
    fn matches_std_ln_1p_on_every_count_value() {
        crate::testutil::on_every_engine(|| {
            let p = Preprocess::<1>::log1p();
            let counts: std::vec::Vec<u16> = (0..=u16::MAX).collect();
            let mut out = std::vec![0.0f32; counts.len()];
            p.counts_f32(&counts, &mut out).unwrap();
            for (c, o) in counts.iter().zip(&out) {
                let reference = (f64::from(*c)).ln_1p() as f32;
                assert!(
                    (o - reference).abs() <= 1e-6 * reference.max(1.0),
                    "count {c}"
                );
            }
        });
    }

    /// Fusing preprocessing (and quantisation) into the first pooling changes nothing.
    #[test]
    fn fused_pooling_equals_preprocess_then_pool() {
        crate::testutil::on_every_engine(|| {
            type P = Pool2d<2, 5, 6, 2>;
            let p = Preprocess::<2> {
                band_scale: [1.7, 0.6],
                z_shift: 0.0,
                z_scale: 1.0,
            };
            let counts: std::vec::Vec<u16> =
                (0..P::IN_LEN).map(|i| ((i * i * 7) % 23) as u16).collect();
            let q = QParams::from_range(0.0, 4.0);
            let mut x = std::vec![0.0f32; P::IN_LEN];
            p.counts_f32(&counts, &mut x).unwrap();
            let mut xq = std::vec![0i8; P::IN_LEN];
            p.counts_s8(&counts, q, &mut xq).unwrap();
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let (mut a, mut b) = ([0.0f32; P::OUT_LEN], [0.0f32; P::OUT_LEN]);
                p.pooled_f32::<_, 5, 6, 2>(kind, &counts, &mut a).unwrap();
                match kind {
                    PoolKind::Max => P::max_f32(&x, &mut b).unwrap(),
                    PoolKind::Avg => P::avg_f32(&x, &mut b).unwrap(),
                }
                assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "{kind:?}");
                let (mut a, mut b) = ([0i8; P::OUT_LEN], [0i8; P::OUT_LEN]);
                p.pooled_s8::<_, 5, 6, 2>(kind, &counts, q, &mut a).unwrap();
                match kind {
                    PoolKind::Max => P::max_s8(&xq, &mut b).unwrap(),
                    PoolKind::Avg => P::avg_s8(&xq, &mut b).unwrap(),
                }
                assert_eq!(a, b, "{kind:?}");
            }
            let mut short = [0.0f32; 5];
            assert!(
                p.pooled_f32::<_, 5, 6, 2>(PoolKind::Avg, &counts, &mut short)
                    .is_err()
            );
        });
    }

    /// The streamed rows are the rows of the whole fused output, bit for bit, for u16 and u8
    /// cubes (counts up to 65535 in u16), every engine, in a window of a different height
    /// (rows placed at an offset, the other window rows untouched); bad requests are errors.
    #[test]
    fn streamed_rows_equal_the_whole_output() {
        fn check<N: Count, const B: usize, const H: usize, const W: usize, const K: usize>(
            counts: &[N],
        ) {
            type P<const B: usize, const H: usize, const W: usize, const K: usize> =
                Pool2d<B, H, W, K>;
            let mut band_scale = [0.0f32; B];
            for (b, s) in band_scale.iter_mut().enumerate() {
                *s = 0.31 + 0.17 * b as f32;
            }
            let p = Preprocess::<B> {
                band_scale,
                z_shift: 0.0,
                z_scale: 1.0,
            };
            let q = QParams::from_range(0.0, 5.0);
            let (oh, ow) = (P::<B, H, W, K>::OH, P::<B, H, W, K>::OW);
            let rows = 5;
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let mut whole = std::vec![0i8; B * oh * ow];
                p.pooled_s8::<N, H, W, K>(kind, counts, q, &mut whole)
                    .unwrap();
                let mut wholef = std::vec![0.0f32; B * oh * ow];
                p.pooled_f32::<N, H, W, K>(kind, counts, &mut wholef)
                    .unwrap();
                for y0 in 0..oh {
                    let n = (oh - y0).min(3);
                    let r = Rows { y0, n, at: 1, rows };
                    let mut win = std::vec![77i8; B * rows * ow];
                    P::<B, H, W, K>::counts_s8_rows(&p, kind, counts, q, r, &mut win).unwrap();
                    let mut winf = std::vec![7.0f32; B * rows * ow];
                    P::<B, H, W, K>::counts_f32_rows(&p, kind, counts, r, &mut winf).unwrap();
                    for b in 0..B {
                        for k in 0..rows {
                            let got = &win[(b * rows + k) * ow..][..ow];
                            let gotf = &winf[(b * rows + k) * ow..][..ow];
                            if (1..=n).contains(&k) {
                                let at = (b * oh + y0 + k - 1) * ow;
                                assert_eq!(got, &whole[at..][..ow], "{kind:?} y0 {y0} b {b}");
                                assert!(
                                    gotf.iter()
                                        .zip(&wholef[at..][..ow])
                                        .all(|(a, e)| a.to_bits() == e.to_bits())
                                );
                            } else {
                                assert!(got.iter().all(|v| *v == 77));
                                assert!(gotf.iter().all(|v| *v == 7.0));
                            }
                        }
                    }
                }
                let mut win = std::vec![0i8; B * rows * ow];
                for r in [
                    Rows {
                        y0: oh - 1,
                        n: 2,
                        at: 0,
                        rows,
                    },
                    Rows {
                        y0: 0,
                        n: 2,
                        at: 4,
                        rows,
                    },
                    Rows {
                        y0: 0,
                        n: 1,
                        at: 0,
                        rows: rows + 1,
                    },
                ] {
                    assert!(
                        P::<B, H, W, K>::counts_s8_rows(&p, kind, counts, q, r, &mut win).is_err(),
                        "{r:?}"
                    );
                }
                let r = Rows {
                    y0: 0,
                    n: 1,
                    at: 0,
                    rows,
                };
                assert!(
                    P::<B, H, W, K>::counts_s8_rows(&p, kind, &counts[1..], q, r, &mut win)
                        .is_err()
                );
            }
        }
        crate::testutil::on_every_engine(|| {
            let mut rng = crate::testutil::Rng(0x5eed_0009);
            let big: std::vec::Vec<u16> = (0..10 * 50 * 50)
                .map(|_| match rng.below(10) {
                    0 => rng.below(65536) as u16,
                    1..=3 => rng.below(256) as u16,
                    _ => rng.below(5) as u16,
                })
                .collect();
            check::<u16, 10, 50, 50, 2>(&big);
            let small: std::vec::Vec<u8> = big.iter().map(|&c| c.min(255) as u8).collect();
            check::<u8, 10, 50, 50, 2>(&small);
            check::<u16, 3, 9, 12, 3>(&big[..3 * 9 * 12]);
        });
    }

    /// Every preprocessing entry point, `B` bands of `H x W` with `K x K` pooling: the counts
    /// as u8 give the bits of the same counts as u16, on this build's path (the x86-64 SIMD
    /// paths widen u8 strips; the others read u8 in place).
    fn u8_like_u16<const B: usize, const H: usize, const W: usize, const K: usize>(counts: &[u16]) {
        let len = B * H * W;
        assert_eq!(counts.len(), len);
        let narrow: std::vec::Vec<u8> = counts.iter().map(|&c| c as u8).collect();
        assert!(narrow.iter().zip(counts).all(|(a, b)| u16::from(*a) == *b));
        let mut band_scale = [0.0f32; B];
        for (b, s) in band_scale.iter_mut().enumerate() {
            *s = 0.37 + 0.29 * b as f32;
        }
        let p = Preprocess::<B> {
            band_scale,
            z_shift: 0.0,
            z_scale: 1.0,
        };
        let q = QParams::from_range(0.0, 6.0);
        let (mut a, mut b) = (std::vec![0.0f32; len], std::vec![1.0f32; len]);
        p.counts_f32(counts, &mut a).unwrap();
        p.counts_f32(&narrow, &mut b).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        let (mut a, mut b) = (std::vec![0i8; len], std::vec![1i8; len]);
        p.counts_s8(counts, q, &mut a).unwrap();
        p.counts_s8(&narrow, q, &mut b).unwrap();
        assert_eq!(a, b);
        let out = Pool2d::<B, H, W, K>::OUT_LEN;
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let (mut a, mut b) = (std::vec![0.0f32; out], std::vec![1.0f32; out]);
            p.pooled_f32::<_, H, W, K>(kind, counts, &mut a).unwrap();
            p.pooled_f32::<_, H, W, K>(kind, &narrow, &mut b).unwrap();
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{B}x{H}x{W} K={K} {kind:?}"
            );
            let (mut a, mut b) = (std::vec![0i8; out], std::vec![1i8; out]);
            p.pooled_s8::<_, H, W, K>(kind, counts, q, &mut a).unwrap();
            p.pooled_s8::<_, H, W, K>(kind, &narrow, q, &mut b).unwrap();
            assert_eq!(a, b, "{B}x{H}x{W} K={K} {kind:?}");
        }
    }

    /// Cubes of counts 0-255 (mostly small, some 255): the model's shape (10 x 50 x 50, a band
    /// longer than one widening piece, 25 row pairs in two strips), odd shapes, a 3 x 3
    /// window, and rows too wide for the widening buffer (the reference then runs for u8).
    #[test]
    fn u8_counts_give_the_same_bits_as_u16() {
        crate::testutil::on_every_engine(|| {
            let mut rng = crate::testutil::Rng(0x5eed_0008);
            let mut cube = |len: usize| -> std::vec::Vec<u16> {
                (0..len)
                    .map(|_| match rng.below(20) {
                        0 => 255,
                        1 => rng.below(256) as u16,
                        2..=4 => rng.below(64) as u16,
                        _ => rng.below(6) as u16,
                    })
                    .collect()
            };
            u8_like_u16::<10, 50, 50, 2>(&cube(25_000));
            u8_like_u16::<10, 50, 50, 2>(&[255; 25_000]);
            u8_like_u16::<10, 50, 50, 2>(&[0; 25_000]);
            u8_like_u16::<3, 7, 9, 2>(&cube(3 * 63));
            u8_like_u16::<2, 90, 30, 2>(&cube(2 * 2700));
            u8_like_u16::<2, 9, 12, 3>(&cube(2 * 108));
            u8_like_u16::<1, 4, 1100, 2>(&cube(4400));
        });
    }

    /// In place equals out of place, bit for bit, for u8 and u16 cubes: every count 0-255
    /// (and larger u16 ones), the model's shape and odd ones, max and average, 2 x 2 and
    /// 3 x 3 windows, and the elementwise transform.
    #[test]
    fn in_place_equals_out_of_place() {
        fn check<const B: usize, const H: usize, const W: usize, const K: usize>(
            rng: &mut crate::testutil::Rng,
        ) {
            let mut band_scale = [0.0f32; B];
            for (b, s) in band_scale.iter_mut().enumerate() {
                *s = 0.41 + 0.23 * b as f32;
            }
            let p = Preprocess::<B> {
                band_scale,
                z_shift: 0.0,
                z_scale: 1.0,
            };
            let q = QParams::from_range(0.0, 6.0);
            let cube: std::vec::Vec<u8> = (0..B * H * W)
                .map(|_| match rng.below(8) {
                    0 => rng.below(256) as u8,
                    1 => 255,
                    _ => rng.below(7) as u8,
                })
                .collect();
            let out = Pool2d::<B, H, W, K>::OUT_LEN;
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let mut want = std::vec![0i8; out];
                p.pooled_s8::<_, H, W, K>(kind, &cube, q, &mut want)
                    .unwrap();
                let mut got = cube.clone();
                p.pooled_s8_in_place::<H, W, K>(kind, &mut got, q).unwrap();
                let got: std::vec::Vec<i8> = got[..out].iter().map(|&b| b as i8).collect();
                assert_eq!(got, want, "{B}x{H}x{W} K={K} {kind:?}");
            }
            let mut want = std::vec![0i8; cube.len()];
            p.counts_s8(&cube, q, &mut want).unwrap();
            let mut got = cube.clone();
            p.counts_s8_in_place(&mut got, q).unwrap();
            assert!(got.iter().zip(&want).all(|(a, b)| *a as i8 == *b));
            let mut short = std::vec![0u8; B * H * W - 1];
            assert!(
                p.pooled_s8_in_place::<H, W, K>(PoolKind::Avg, &mut short, q)
                    .is_err()
            );
            // A u16 cube (counts past 255 too, and saturated ones): the inputs in the front
            // bytes of its memory, as `arena_in` reads them.
            let cube: std::vec::Vec<u16> = (0..B * H * W)
                .map(|_| match rng.below(8) {
                    0 => rng.below(65536) as u16,
                    1 => u16::MAX,
                    2 => rng.below(300) as u16,
                    _ => rng.below(7) as u16,
                })
                .collect();
            let front = |c: &[u16], n: usize| -> std::vec::Vec<i8> {
                c.iter()
                    .flat_map(|v| v.to_ne_bytes())
                    .take(n)
                    .map(|b| b as i8)
                    .collect()
            };
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let mut want = std::vec![0i8; out];
                p.pooled_s8::<_, H, W, K>(kind, &cube, q, &mut want)
                    .unwrap();
                let mut got = cube.clone();
                p.pooled_s8_in_place::<H, W, K>(kind, &mut got, q).unwrap();
                assert_eq!(front(&got, out), want, "u16 {B}x{H}x{W} K={K} {kind:?}");
            }
            let mut want = std::vec![0i8; cube.len()];
            p.counts_s8(&cube, q, &mut want).unwrap();
            let mut got = cube.clone();
            p.counts_s8_in_place(&mut got, q).unwrap();
            assert_eq!(front(&got, cube.len()), want, "u16 {B}x{H}x{W}");
            let mut short = std::vec![0u16; B * H * W - 1];
            assert!(
                p.pooled_s8_in_place::<H, W, K>(PoolKind::Avg, &mut short, q)
                    .is_err()
            );
        }
        let mut rng = crate::testutil::Rng(0x1a_91ace);
        check::<10, 50, 50, 2>(&mut rng);
        check::<3, 7, 9, 2>(&mut rng);
        check::<2, 9, 12, 3>(&mut rng);
        check::<1, 5, 5, 5>(&mut rng);
    }

    #[test]
    fn rejects_mismatched_buffers_without_panicking() {
        let p = Preprocess::<10>::log1p();
        let mut out = [0.0f32; 19];
        assert_eq!(
            p.counts_f32(&[0u16; 20], &mut out),
            Err(Error::BadLength {
                expected: 20,
                got: 19
            })
        );
        let mut out = [0.0f32; 15];
        assert!(p.counts_f32(&[0u16; 15], &mut out).is_err());
    }
}
