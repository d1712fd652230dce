//! Preprocessing of raw u16 detector counts into the network's input.
//!
//! The device receives what the detector gives (photon counts per band and
//! pixel); the transform the network was trained with is applied here, so the
//! host trainer and the device share one definition: `x = ln(1 + counts) *
//! scale[band]`, and the redshift is mapped as `(z - z_shift) * z_scale`.

use crate::Error;
use crate::kernels::pool::{Pool2d, PoolKind, avg_round};
#[allow(unused_imports)] // which of these a build uses depends on its SIMD paths
use crate::kernels::simd::{self, Path};
use crate::quant::QParams;

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
    pub fn counts_f32(&self, counts: &[u16], out: &mut [f32]) -> Result<(), Error> {
        let plane = self.plane(counts.len(), out.len())?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.value(counts, plane, i);
        }
        Ok(())
    }

    /// Preprocess and quantise to int8 with the input tensor's parameters `q`.
    ///
    /// On [`Path::Avx512`] each band's counts below 256 are looked up in a table of their
    /// quantised inputs built with vector arithmetic (the same bits); the result is
    /// identical on every path.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// use runtime::quant::QParams;
    /// let p = Preprocess::<1>::log1p();
    /// let q = QParams { scale: 0.05, zero_point: -128 };
    /// let mut out = [0i8; 2];
    /// p.counts_s8(&[0, 1], q, &mut out).unwrap();
    /// assert_eq!(out, [-128, -128 + 14]); // ln 2 / 0.05 = 13.9
    /// ```
    pub fn counts_s8(&self, counts: &[u16], q: QParams, out: &mut [i8]) -> Result<(), Error> {
        let plane = self.plane(counts.len(), out.len())?;
        if plane == 0 {
            return Ok(());
        }
        #[cfg(all(target_arch = "x86_64", not(feature = "force-reference")))]
        if matches!(simd::active_s8(), Path::Avx512 | Path::Avx2) {
            let avx512 = simd::active_s8() == Path::Avx512;
            for (b, (c, o)) in counts
                .chunks_exact(plane)
                .zip(out.chunks_exact_mut(plane))
                .enumerate()
            {
                let scale = self.band_scale[b];
                let slow = |n| q.quantize(log1p_count(n) * scale);
                // SAFETY: `active_s8` checked the AVX-512 (or AVX2) features; `c` and `o`
                // have the same length.
                unsafe {
                    if avx512 {
                        simd::x512_misc::quantize_s8(c, scale, q, o, slow);
                    } else {
                        simd::x2_misc::quantize_s8(c, scale, q, o, slow);
                    }
                }
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
                *y = memo.get(*x);
            }
        }
        Ok(())
    }

    /// Preprocessing fused with the first `K x K` pooling of an `H x W` cube: each
    /// window is preprocessed as it is pooled, so the full-resolution input is never
    /// stored. Identical to [`Preprocess::counts_f32`] followed by
    /// [`Pool2d::max_f32`]/[`Pool2d::avg_f32`], bit for bit on every path (on
    /// [`Path::Avx512`], `K = 2` runs 16 windows at a time).
    pub fn pooled_f32<const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        counts: &[u16],
        out: &mut [f32],
    ) -> Result<(), Error> {
        Pool2d::<BANDS, H, W, K>::check_lengths(counts.len(), out.len())?;
        #[cfg(all(target_arch = "x86_64", not(feature = "force-reference")))]
        if K == 2 && matches!(simd::active(), Path::Avx512 | Path::Avx2) {
            self.pooled2_f32_x512::<H, W, K>(kind, counts, out);
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
    /// on every path (on [`Path::Avx512`], `K = 2` runs 64 counts of a row pair at a time).
    pub fn pooled_s8<const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        counts: &[u16],
        q: QParams,
        out: &mut [i8],
    ) -> Result<(), Error> {
        Pool2d::<BANDS, H, W, K>::check_lengths(counts.len(), out.len())?;
        #[cfg(all(target_arch = "x86_64", not(feature = "force-reference")))]
        if matches!(simd::active_s8(), Path::Avx512 | Path::Avx2) {
            self.pooled_s8_x512::<H, W, K>(kind, counts, q, out);
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
            let get = |i: usize| memo.get(c[i]);
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

    /// [`Preprocess::pooled_f32`] with `K == 2` on [`Path::Avx512`], lengths checked: per band
    /// a 256-entry table of inputs and [`simd::x512_misc::pool2_f32`]; rows with a count of
    /// 256 or more are redone by the reference's window loop.
    #[cfg(all(target_arch = "x86_64", not(feature = "force-reference")))]
    fn pooled2_f32_x512<const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        counts: &[u16],
        out: &mut [f32],
    ) {
        let per_band = Pool2d::<1, H, W, K>::OUT_LEN;
        let max = kind == PoolKind::Max;
        let inv = 1.0 / (K * K) as f32;
        let avx512 = simd::active() == Path::Avx512;
        for (b, (c, o)) in counts
            .chunks_exact(H * W)
            .zip(out.chunks_exact_mut(per_band))
            .enumerate()
        {
            let scale = self.band_scale[b];
            let get = |i: usize| log1p_count(c[i]) * scale;
            let redo = |oy: usize, row: &mut [f32]| match kind {
                PoolKind::Max => Pool2d::<1, H, W, K>::row_with(&get, 0, oy, row, |it| {
                    it.fold(f32::NEG_INFINITY, f32::max)
                }),
                PoolKind::Avg => Pool2d::<1, H, W, K>::row_with(&get, 0, oy, row, |it| {
                    it.fold(0.0f32, |a, v| a + v) * inv
                }),
            };
            let mut table = [0.0f32; 256];
            // SAFETY: `active` checked the AVX-512 (or AVX2) features; with K = 2 (so W / 2
            // >= 1 as W >= K) the band holds H W >= (2 OH - 1) W + 2 OW counts and `o` OH OW
            // outputs.
            unsafe {
                if avx512 {
                    simd::x512_misc::f32_table(scale, max, &mut table);
                    simd::x512_misc::pool2_f32(c, W, W / 2, &table, max, o, redo);
                } else {
                    simd::x2_misc::f32_table(scale, max, &mut table);
                    simd::x2_misc::pool2_f32(c, W, W / 2, &table, max, o, redo);
                }
            }
        }
    }

    /// [`Preprocess::pooled_s8`] on [`Path::Avx512`], lengths checked: per band
    /// [`simd::x512_misc::pool2_s8`] for `K == 2` (rows with a count of 256 or more redone by
    /// the reference's window loop with the kernel's table), or that loop with a table of
    /// quantised inputs ([`simd::x512_misc::quant_table`]) for other windows.
    #[cfg(all(target_arch = "x86_64", not(feature = "force-reference")))]
    fn pooled_s8_x512<const H: usize, const W: usize, const K: usize>(
        &self,
        kind: PoolKind,
        counts: &[u16],
        q: QParams,
        out: &mut [i8],
    ) {
        let per_band = Pool2d::<1, H, W, K>::OUT_LEN;
        let n = (K * K) as i32;
        let avx512 = simd::active_s8() == Path::Avx512;
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
                    let get = |i: usize| value(table, c[i]);
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
                // SAFETY: `active_s8` checked the AVX-512 (or AVX2) features; with K = 2 (so
                // W / 2 >= 1 as W >= K) the band holds H W >= (2 OH - 1) W + 2 OW counts and
                // `o` OH OW outputs.
                unsafe {
                    if avx512 {
                        simd::x512_misc::pool2_s8(c, W, W / 2, scale, q, max, o, redo);
                    } else {
                        simd::x2_misc::pool2_s8(c, W, W / 2, scale, q, max, o, redo);
                    }
                }
            } else {
                let mut table = [0i8; 256];
                // SAFETY: `active_s8` checked the AVX-512 (or AVX2) features.
                unsafe {
                    if avx512 {
                        simd::x512_misc::quant_table(scale, q, &mut table);
                    } else {
                        simd::x2_misc::quant_table(scale, q, &mut table);
                    }
                }
                let get = |i: usize| value(&table, c[i]);
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
    fn value(&self, counts: &[u16], plane: usize, i: usize) -> f32 {
        let scale = self.band_scale.get(i / plane).copied().unwrap_or(0.0);
        log1p_count(counts[i]) * scale
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
    }

    /// Fusing preprocessing (and quantisation) into the first pooling changes nothing.
    #[test]
    fn fused_pooling_equals_preprocess_then_pool() {
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
            p.pooled_f32::<5, 6, 2>(kind, &counts, &mut a).unwrap();
            match kind {
                PoolKind::Max => P::max_f32(&x, &mut b).unwrap(),
                PoolKind::Avg => P::avg_f32(&x, &mut b).unwrap(),
            }
            assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "{kind:?}");
            let (mut a, mut b) = ([0i8; P::OUT_LEN], [0i8; P::OUT_LEN]);
            p.pooled_s8::<5, 6, 2>(kind, &counts, q, &mut a).unwrap();
            match kind {
                PoolKind::Max => P::max_s8(&xq, &mut b).unwrap(),
                PoolKind::Avg => P::avg_s8(&xq, &mut b).unwrap(),
            }
            assert_eq!(a, b, "{kind:?}");
        }
        let mut short = [0.0f32; 5];
        assert!(
            p.pooled_f32::<5, 6, 2>(PoolKind::Avg, &counts, &mut short)
                .is_err()
        );
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
