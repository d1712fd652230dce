//! 2-D max and average pooling with a square window equal to its stride
//! (trailing rows and columns that do not fill a window are dropped, as in
//! Keras and burn), and global average pooling.

use crate::Error;

/// Pooling of `C x IH x IW` with a `K x K` window and stride `K`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pool2d<const C: usize, const IH: usize, const IW: usize, const K: usize>;

impl<const C: usize, const IH: usize, const IW: usize, const K: usize> Pool2d<C, IH, IW, K> {
    /// Output height.
    pub const OH: usize = IH / K;
    /// Output width.
    pub const OW: usize = IW / K;
    /// Input length.
    pub const IN_LEN: usize = C * IH * IW;
    /// Output length.
    pub const OUT_LEN: usize = C * Self::OH * Self::OW;

    const CHECK: () = assert!(
        K > 0 && IH >= K && IW >= K,
        "the window does not fit the input"
    );

    fn check(input: usize, out: usize) -> Result<(), Error> {
        let () = Self::CHECK;
        if input != Self::IN_LEN {
            return Err(Error::BadLength {
                expected: Self::IN_LEN,
                got: input,
            });
        }
        if out != Self::OUT_LEN {
            return Err(Error::BadLength {
                expected: Self::OUT_LEN,
                got: out,
            });
        }
        Ok(())
    }

    /// The window loop shared by every pooling path (and the fused preprocessing):
    /// `out[c][oy][ox] = f(values of the window in row order)`, values read through
    /// `get(input index)`. Callers check the lengths first.
    #[inline(always)]
    pub(crate) fn each_with<T: Copy, A, G: Fn(usize) -> T>(
        get: G,
        out: &mut [A],
        mut f: impl FnMut(Window<'_, T, G>) -> A,
    ) {
        let (oh, ow) = (Self::OH, Self::OW);
        for c in 0..C {
            for oy in 0..oh {
                let row = &mut out[(c * oh + oy) * ow..][..ow];
                Self::row_with(&get, c, oy, row, &mut f);
            }
        }
    }

    /// One output row of [`Pool2d::each_with`]: `row[ox] = f(window (c, oy, ox))` for the
    /// first [`Pool2d::OW`] outputs of `row` (the SIMD paths redo single rows with it).
    #[inline(always)]
    pub(crate) fn row_with<T: Copy, A, G: Fn(usize) -> T>(
        get: &G,
        c: usize,
        oy: usize,
        row: &mut [A],
        mut f: impl FnMut(Window<'_, T, G>) -> A,
    ) {
        for (ox, y) in row.iter_mut().take(Self::OW).enumerate() {
            *y = f(Window {
                get,
                base: (c * IH + oy * K) * IW + ox * K,
                stride: IW,
                k: K,
                at: 0,
                _t: core::marker::PhantomData,
            });
        }
    }

    /// Check an input and output length against this shape.
    pub fn check_lengths(input: usize, out: usize) -> Result<(), Error> {
        Self::check(input, out)
    }

    /// Maximum over each window.
    ///
    /// ```
    /// use runtime::kernels::pool::Pool2d;
    /// let mut y = [0.0f32; 1];
    /// Pool2d::<1, 2, 2, 2>::max_f32(&[1.0, 4.0, -2.0, 3.0], &mut y).unwrap();
    /// assert_eq!(y, [4.0]);
    /// ```
    pub fn max_f32(input: &[f32], out: &mut [f32]) -> Result<(), Error> {
        Self::check(input.len(), out.len())?;
        Self::each_with(|i| input[i], out, |it| it.fold(f32::NEG_INFINITY, f32::max));
        Ok(())
    }

    /// Mean over each window (summed in window order, then multiplied by 1/K^2).
    pub fn avg_f32(input: &[f32], out: &mut [f32]) -> Result<(), Error> {
        Self::check(input.len(), out.len())?;
        let inv = 1.0 / (K * K) as f32;
        Self::each_with(|i| input[i], out, |it| it.fold(0.0f32, |a, v| a + v) * inv);
        Ok(())
    }

    /// Maximum over each window; input and output share quantisation parameters.
    pub fn max_s8(input: &[i8], out: &mut [i8]) -> Result<(), Error> {
        Self::check(input.len(), out.len())?;
        Self::each_with(|i| input[i], out, |it| it.fold(i8::MIN, i8::max));
        Ok(())
    }

    /// Mean over each window, rounded half away from zero as TFLite's int8 average pool.
    ///
    /// ```
    /// use runtime::kernels::pool::Pool2d;
    /// let mut y = [0i8; 2];
    /// Pool2d::<2, 2, 2, 2>::avg_s8(&[1, 2, 2, 2, -1, -2, -2, -2], &mut y).unwrap();
    /// assert_eq!(y, [2, -2]); // 7/4 = 1.75 -> 2, -7/4 -> -2
    /// ```
    pub fn avg_s8(input: &[i8], out: &mut [i8]) -> Result<(), Error> {
        Self::check(input.len(), out.len())?;
        let n = (K * K) as i32;
        Self::each_with(
            |i| input[i],
            out,
            |it| avg_round(it.map(i32::from).sum(), n),
        );
        Ok(())
    }
}

/// The values of one `k x k` window in row order, read through `get(input index)` (a
/// concrete iterator, so pooling loops inline instead of calling through `dyn Iterator`).
pub(crate) struct Window<'g, T, G> {
    get: &'g G,
    base: usize,
    stride: usize,
    k: usize,
    at: usize,
    _t: core::marker::PhantomData<T>,
}

impl<T, G: Fn(usize) -> T> Iterator for Window<'_, T, G> {
    type Item = T;
    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        if self.at == self.k * self.k {
            return None;
        }
        let (ky, kx) = (self.at / self.k, self.at % self.k);
        self.at += 1;
        Some((self.get)(self.base + ky * self.stride + kx))
    }
}

/// Max or average pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window.
    Max,
    /// Mean over the window.
    Avg,
}

/// `sum / n` rounded half away from zero and saturated to int8 (TFLite's int8 average).
#[inline(always)]
pub(crate) fn avg_round(sum: i32, n: i32) -> i8 {
    let r = if sum >= 0 {
        (sum + n / 2) / n
    } else {
        (sum - n / 2) / n
    };
    r.clamp(-128, 127) as i8
}

/// Global average pooling of `C x H x W` to `C` values.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalAvgPool<const C: usize, const H: usize, const W: usize>;

impl<const C: usize, const H: usize, const W: usize> GlobalAvgPool<C, H, W> {
    /// Input length.
    pub const IN_LEN: usize = C * H * W;
    /// Output length.
    pub const OUT_LEN: usize = C;

    fn check(input: usize, out: usize) -> Result<(), Error> {
        for (expected, got) in [(Self::IN_LEN, input), (C, out)] {
            if expected != got {
                return Err(Error::BadLength { expected, got });
            }
        }
        Ok(())
    }

    /// Mean of each channel plane (summed in row order, then multiplied by 1/(H W)).
    ///
    /// ```
    /// use runtime::kernels::pool::GlobalAvgPool;
    /// let mut y = [0.0f32; 2];
    /// GlobalAvgPool::<2, 1, 2>::f32(&[1.0, 3.0, -1.0, 0.0], &mut y).unwrap();
    /// assert_eq!(y, [2.0, -0.5]);
    /// ```
    pub fn f32(input: &[f32], out: &mut [f32]) -> Result<(), Error> {
        Self::check(input.len(), out.len())?;
        let inv = 1.0 / (H * W) as f32;
        for (plane, y) in input.chunks_exact(H * W).zip(out.iter_mut()) {
            *y = plane.iter().fold(0.0f32, |a, v| a + v) * inv;
        }
        Ok(())
    }

    /// int8 mean of each plane, rounded half away from zero; parameters pass through.
    pub fn s8(input: &[i8], out: &mut [i8]) -> Result<(), Error> {
        Self::check(input.len(), out.len())?;
        for (plane, y) in input.chunks_exact(H * W).zip(out.iter_mut()) {
            *y = avg_round(plane.iter().map(|v| i32::from(*v)).sum(), (H * W) as i32);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_sizes_drop_the_remainder_and_s8_tracks_f32() {
        crate::testutil::on_every_engine(|| {
            type P = Pool2d<2, 5, 5, 2>;
            let x: std::vec::Vec<i8> = (0..P::IN_LEN)
                .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
                .collect();
            let xf: std::vec::Vec<f32> = x.iter().map(|&v| f32::from(v)).collect();
            let (mut a, mut b) = ([0i8; 8], [0f32; 8]);
            P::avg_s8(&x, &mut a).unwrap();
            P::avg_f32(&xf, &mut b).unwrap();
            for (q, f) in a.iter().zip(&b) {
                assert!((f32::from(*q) - f).abs() <= 0.5, "{q} vs {f}");
            }
            let (mut m, mut mf) = ([0i8; 8], [0f32; 8]);
            P::max_s8(&x, &mut m).unwrap();
            P::max_f32(&xf, &mut mf).unwrap();
            assert!(m.iter().zip(&mf).all(|(q, f)| f32::from(*q) == *f));
            assert!(P::max_f32(&xf[..10], &mut mf).is_err());
        });
    }
}
