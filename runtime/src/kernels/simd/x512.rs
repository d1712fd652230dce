//! x86-64 AVX-512 (F, BW, VL, VNNI, VBMI): the convolution engine of Zen 4, Ice Lake and
//! later cores.

#[cfg(target_arch = "x86_64")]
#[allow(unused_imports)]
use core::arch::x86_64::*;

// ---------------------------------------------------------------------------------------
// Convolution engine (stride 1). Rows of output pixels are computed as one flat run over
// the zero-padded input width `PW`: output (y, x) sits at flat position `y PW + x`, and tap
// (ic, ky, kx) reads padded plane `ic` at that position plus `D (ky PW + kx)`. So 16
// consecutive outputs read 16 consecutive inputs for every tap (no im2col of single
// pixels); the `PW - OW` columns past each row's end are computed and dropped.
//
// * f32 / f16: each tap is one 16-lane load of the padded plane, multiplied by one weight
//   of each of `N` output channels, broadcast (`vfmadd231ps zmm, zmm, m32{1to16}`); each
//   accumulator starts from the bias and adds the taps in the reference's (ic, ky, kx)
//   order, so outputs differ from the reference only by fused multiply-add rounding.
// * int8: VNNI `vpdpbusd` multiplies 4 consecutive (ic, ky, kx) taps of 16 outputs at once:
//   the activations as unsigned bytes `x + 128` interleaved `[pixel][4 taps]` per group of
//   4 taps (built once per band of pixels, shared by every output channel), times the 4
//   weights of one output channel broadcast as one 32-bit word straight from the
//   `[OC][IC][K][K]` weights. The `+ 128` is taken back exactly through the bias:
//   `bias - (128 + zp) sum(w)`, so the i32 sums equal the reference's. Requantisation is
//   TFLite's, 16 lanes at a time, bit-identical.
//
// Outputs go to a small chunk buffer of a few output rows and from there, rows compacted
// or pooled, into the caller's channel-first map.

use super::super::args::QuantArgs;
use super::super::pool::PoolKind;

/// Output positions (flat) per chunk, about: sets the rows per chunk.
const CHUNK: usize = 256;
/// The largest pooling window the engine fuses.
pub(crate) const MAX_POOL: usize = 4;
/// 16-pixel vectors per int8 activation band.
const BV: usize = 4;

pub(crate) use super::Sink;

/// Output channels per register block of the int8 engine: 8 (4 for up to 4 channels).
pub(crate) const fn block_s8(oc: usize) -> usize {
    if oc <= 4 { 4 } else { 8 }
}

/// Output channels per register block of the float engine (at most 24 accumulators).
pub(crate) const fn block(oc: usize) -> usize {
    let nb = oc.div_ceil(24);
    let n = oc.div_ceil(nb);
    if n <= 4 {
        4
    } else if n <= 8 {
        8
    } else if n <= 12 {
        12
    } else if n <= 16 {
        16
    } else if n <= 20 {
        20
    } else {
        24
    }
}

const fn align(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Shape-derived sizes of the engine for `[IC, IH, IW, OC, K, S, D, P]`.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    ic: usize,
    iw: usize,
    ih: usize,
    oc: usize,
    k: usize,
    d: usize,
    p: usize,
    /// Padded input width.
    pw: usize,
    /// Kernel extent.
    ext: usize,
    /// Output width.
    ow: usize,
    /// Window length `IC K K`.
    l: usize,
    /// Output channels rounded up to whole register blocks (float, int8).
    ocp: usize,
    ocp8: usize,
    /// Chunk buffer stride per channel.
    ostr: usize,
}

impl Dims {
    pub(crate) const fn new(sh: super::Shape) -> Self {
        let [ic, ih, iw, oc, k, _s, d, p] = sh;
        let pw = iw + 2 * p;
        let ext = d * (k - 1) + 1;
        let n = block(oc);
        // A chunk holds at most max(CHUNK, MAX_POOL rows) positions, and never more rows
        // than the map has.
        let most = if CHUNK > MAX_POOL * pw {
            CHUNK
        } else {
            MAX_POOL * pw
        };
        let map = (ih + 2 * p - ext + 1) * pw;
        let most = if map < most { map } else { most };
        Self {
            ic,
            iw,
            ih,
            oc,
            k,
            d,
            p,
            pw,
            ext,
            ow: pw - ext + 1,
            l: ic * k * k,
            ocp: oc.div_ceil(n) * n,
            ocp8: oc.div_ceil(block_s8(oc)) * block_s8(oc),
            ostr: most.div_ceil(16) * 16,
        }
    }
    /// Output rows per chunk when pooling `pk x pk` (1: no pooling; at most [`MAX_POOL`]).
    const fn chunk_rows(&self, pk: usize) -> usize {
        let r = CHUNK / self.pw / pk * pk;
        if r < pk { pk } else { r }
    }
    /// Padded planes of `rows` output rows: plane length, and total with read slack.
    const fn plane(&self, rows: usize) -> usize {
        (rows + self.ext - 1) * self.pw
    }
    const fn planes(&self, rows: usize) -> usize {
        self.ic * self.plane(rows) + 16 * BV + self.ext + 64
    }
    /// Groups of 4 taps.
    const fn groups(&self) -> usize {
        self.l.div_ceil(4)
    }
    const fn max_rows(&self) -> usize {
        self.ih + 2 * self.p - self.ext + 1
    }
    /// Bytes of int8 scratch: planes, padded weight copy, per-channel constants, tap
    /// offsets, the activation band and the chunk buffer (each 64-byte aligned).
    pub(crate) const fn bytes_s8(&self) -> usize {
        64 + align(self.planes(self.max_rows()))
            + align(self.ocp8 * 4 * self.groups())
            + align(7 * 4 * self.ocp8)
            + align(4 * 4 * self.groups())
            + align(self.groups() * BV * 64)
            + align(self.ocp8 * self.ostr + 64)
    }
    /// f32 values of float scratch: planes, weight copy, chunk buffer.
    pub(crate) const fn len_f32(&self) -> usize {
        16 + align(self.planes(self.max_rows()))
            + align(self.ocp * self.l)
            + align(self.ocp * self.ostr + 16)
    }
}

/// Carve `n` elements, 64-byte aligned, off the front of `buf`.
fn take<'a, T>(buf: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let b = core::mem::take(buf);
    let skip = b.as_ptr().align_offset(64).min(b.len());
    let (_, b) = b.split_at_mut(skip);
    let (head, tail) = b.split_at_mut(n.min(b.len()));
    *buf = tail;
    head
}

use super::x512_util::mask64;

/// Element types of the padded planes: copy a row of `n` values with the engine's mapping
/// (int8: `x + 128` as u8), 64 bytes at a time.
trait Lane: Copy {
    type Src: Copy;
    /// `dst[..n] = map(src[..n])`.
    ///
    /// # Safety
    /// AVX-512 F/BW; `n` values readable at `src` and writable at `dst`.
    unsafe fn copy_row(src: *const Self::Src, dst: *mut Self, n: usize);
    /// `dst[..n] = v`.
    ///
    /// # Safety
    /// As [`Lane::copy_row`].
    unsafe fn fill_row(dst: *mut Self, n: usize, v: Self);
}

impl Lane for u8 {
    type Src = i8;
    #[inline(always)]
    unsafe fn copy_row(src: *const i8, dst: *mut u8, n: usize) {
        let mut i = 0;
        while i < n {
            let m = mask64(n - i);
            // SAFETY: masked lanes stay inside the n values.
            unsafe {
                let v = _mm512_maskz_loadu_epi8(m, src.add(i));
                let v = _mm512_xor_si512(v, _mm512_set1_epi8(-128));
                _mm512_mask_storeu_epi8(dst.add(i).cast(), m, v);
            }
            i += 64;
        }
    }
    #[inline(always)]
    unsafe fn fill_row(dst: *mut u8, n: usize, v: u8) {
        let mut i = 0;
        while i < n {
            // SAFETY: masked lanes stay inside the n values.
            unsafe {
                _mm512_mask_storeu_epi8(dst.add(i).cast(), mask64(n - i), _mm512_set1_epi8(v as i8))
            };
            i += 64;
        }
    }
}

impl Lane for f32 {
    type Src = f32;
    #[inline(always)]
    unsafe fn copy_row(src: *const f32, dst: *mut f32, n: usize) {
        let mut i = 0;
        while i < n {
            let m = mask64(n - i) as __mmask16;
            // SAFETY: masked lanes stay inside the n values.
            unsafe { _mm512_mask_storeu_ps(dst.add(i), m, _mm512_maskz_loadu_ps(m, src.add(i))) };
            i += 16;
        }
    }
    #[inline(always)]
    unsafe fn fill_row(dst: *mut f32, n: usize, v: f32) {
        let mut i = 0;
        while i < n {
            let m = mask64(n - i) as __mmask16;
            // SAFETY: masked lanes stay inside the n values.
            unsafe { _mm512_mask_storeu_ps(dst.add(i), m, _mm512_set1_ps(v)) };
            i += 16;
        }
    }
}

/// Fill padded planes `[ic][rows + ext - 1][pw]` for output rows `oy0..oy0 + rows` from the
/// `[IC][IH][IW]` input (mapped as [`Lane`] does), `pad` outside the input and in the slack.
#[inline(always)]
fn fill_planes<C: Lane>(
    dm: &Dims,
    input: &[C::Src],
    oy0: usize,
    rows: usize,
    planes: &mut [C],
    pad: C,
) {
    let nr = rows + dm.ext - 1;
    let (pw, p, iw, ih) = (dm.pw, dm.p, dm.iw, dm.ih);
    // Everything padding first (one long fill), then the input rows over it.
    // SAFETY: AVX-512 (engine); the whole slice.
    unsafe { C::fill_row(planes.as_mut_ptr(), planes.len(), pad) };
    let (y0, y1) = (oy0.max(p), (oy0 + nr).min(p + ih));
    for (c, plane) in planes.chunks_exact_mut(nr * pw).take(dm.ic).enumerate() {
        for y in y0..y1 {
            let src = &input[(c * ih + y - p) * iw..][..iw];
            let row = &mut plane[(y - oy0) * pw..][..pw];
            // SAFETY: AVX-512 (engine); iw values of `src`, and of `row` from p (p + iw <= pw).
            unsafe { C::copy_row(src.as_ptr(), row.as_mut_ptr().add(p), iw) };
        }
    }
}

/// Per-channel requantisation constants, broadcast.
#[derive(Clone, Copy)]
struct Rq {
    mp: __m512i,
    mn: __m512i,
    lp: __m512i,
    ln: __m512i,
    rp: __m512i,
    rn: __m512i,
}

/// TFLite requantisation of 16 accumulators of one channel, plus the output zero point
/// (i32 lanes, to be saturated to int8): bit-identical to [`QuantArgs::output`].
#[inline(always)]
fn requant16(acc: __m512i, c: &Rq, zp: __m512i) -> __m512i {
    // SAFETY: only inlined into the engine's AVX-512 functions.
    unsafe {
        let neg = _mm512_cmplt_epi32_mask(acc, _mm512_setzero_si512());
        let m = _mm512_mask_blend_epi32(neg, c.mp, c.mn);
        let l = _mm512_mask_blend_epi32(neg, c.lp, c.ln);
        let r = _mm512_mask_blend_epi32(neg, c.rp, c.rn);
        let x = _mm512_sllv_epi32(acc, l);
        // Doubling high multiply (x m + 2^30) >> 31 on even and odd lanes (see x86::Rq8).
        let half = _mm512_set1_epi64(1 << 30);
        let even = _mm512_srli_epi64::<31>(_mm512_add_epi64(_mm512_mul_epi32(x, m), half));
        let odd = _mm512_add_epi64(
            _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(m)),
            half,
        );
        let odd = _mm512_slli_epi64::<1>(odd);
        let high = _mm512_mask_blend_epi32(0xaaaa, even, odd);
        // Rounding divide by 2^r, half away from zero.
        let one = _mm512_set1_epi32(1);
        let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, r), one);
        let rem = _mm512_and_si512(high, mask);
        let t = _mm512_srai_epi32::<1>(mask);
        let hneg = _mm512_cmplt_epi32_mask(high, _mm512_setzero_si512());
        let thr = _mm512_mask_add_epi32(t, hneg, t, one);
        let up = _mm512_cmpgt_epi32_mask(rem, thr);
        let s = _mm512_srav_epi32(high, r);
        let s = _mm512_mask_add_epi32(s, up, s, one);
        _mm512_add_epi32(s, zp)
    }
}

/// Write chunk rows `r0..r0 + nr` (of `rows` computed from the first) from the chunk buffer
/// `o` (`[ocp][ostr]`, row `r` of the chunk at `r pw`) to the sink.
#[inline(always)]
fn drain_s8(dm: &Dims, o: &[i8], r0: usize, nr: usize, rows: usize, sink: &mut Sink<'_, i8>) {
    let (pw, ow) = (dm.pw, dm.ow);
    match sink {
        Sink::Rows(out) => {
            for oc in 0..dm.oc {
                for r in 0..nr {
                    let src = &o[oc * dm.ostr + r * pw..][..ow];
                    out[(oc * rows + r0 + r) * ow..][..ow].copy_from_slice(src);
                }
            }
        }
        Sink::Pool { kind, pk, out } => {
            let (pk, kind) = (*pk, *kind);
            let (ph, pwo) = (rows / pk, ow / pk);
            for oc in 0..dm.oc {
                for pr in 0..nr / pk {
                    let base = oc * dm.ostr + pr * pk * pw;
                    let dst = &mut out[(oc * ph + r0 / pk + pr) * pwo..][..pwo];
                    if pk == 2 {
                        // SAFETY: AVX-512 BW (engine), rows inside the chunk buffer.
                        unsafe { pool2_s8(&o[base..base + pw + ow], pw, kind, dst) };
                        continue;
                    }
                    for (px, y) in dst.iter_mut().enumerate() {
                        let at = |ky: usize, kx: usize| o[base + ky * pw + px * pk + kx];
                        *y = match kind {
                            PoolKind::Max => {
                                let mut m = i8::MIN;
                                for ky in 0..pk {
                                    for kx in 0..pk {
                                        m = m.max(at(ky, kx));
                                    }
                                }
                                m
                            }
                            PoolKind::Avg => {
                                let mut s = 0i32;
                                for ky in 0..pk {
                                    for kx in 0..pk {
                                        s += i32::from(at(ky, kx));
                                    }
                                }
                                super::super::pool::avg_round(s, (pk * pk) as i32)
                            }
                        };
                    }
                }
            }
        }
    }
}

/// 2 x 2 pooling of two rows (`src[..]` and `src[pw..]`) into `dst` (`dst.len()` outputs).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pool2_s8(src: &[i8], pw: usize, kind: PoolKind, dst: &mut [i8]) {
    let n = dst.len();
    let mut x = 0;
    while x < n {
        let m = (n - x).min(32);
        let lanes = mask64(2 * m);
        // SAFETY: 2m bytes of each row from 2x are inside `src` (masked loads).
        unsafe {
            let a = _mm512_maskz_loadu_epi8(lanes, src.as_ptr().add(2 * x).cast());
            let b = _mm512_maskz_loadu_epi8(lanes, src.as_ptr().add(pw + 2 * x).cast());
            let lo = |v: __m512i| _mm512_srai_epi16::<8>(_mm512_slli_epi16::<8>(v));
            let hi = |v: __m512i| _mm512_srai_epi16::<8>(v);
            let res = match kind {
                PoolKind::Max => {
                    let v = _mm512_max_epi8(a, b);
                    _mm512_cvtepi16_epi8(_mm512_max_epi16(lo(v), hi(v)))
                }
                PoolKind::Avg => {
                    // Sum of each pair of columns of both rows, as i16 (32 lanes).
                    let s = _mm512_add_epi16(
                        _mm512_add_epi16(lo(a), hi(a)),
                        _mm512_add_epi16(lo(b), hi(b)),
                    );
                    // avg_round(s, 4): (|s| + 2) / 4 with the sign of s.
                    let mag = _mm512_srli_epi16::<2>(_mm512_add_epi16(
                        _mm512_abs_epi16(s),
                        _mm512_set1_epi16(2),
                    ));
                    let neg = _mm512_cmplt_epi16_mask(s, _mm512_setzero_si512());
                    let r = _mm512_mask_sub_epi16(mag, neg, _mm512_setzero_si512(), mag);
                    _mm512_cvtepi16_epi8(r)
                }
            };
            _mm256_mask_storeu_epi8(dst.as_mut_ptr().add(x).cast(), mask64(m) as __mmask32, res);
        }
        x += m;
    }
}

/// One output-channel block of one 16-pixel vector: `N` accumulators over `groups` groups
/// of 4 taps, activations `a` (`[group][BV][64]` bytes), weights `w` (`N` rows of `ws`).
///
/// # Safety
/// AVX-512 VNNI; `a` and `w` readable as described.
#[inline(always)]
unsafe fn dot_s8<const N: usize>(
    a: *const u8,
    groups: usize,
    w: *const u8,
    ws: usize,
    init: &[__m512i; N],
) -> [__m512i; N] {
    let mut acc = *init;
    // One pointer per channel row (a runtime stride would otherwise cost a register
    // each plus spills): at most 8 rows per block.
    // SAFETY: per the caller, rows n < N of the weights.
    let rows: [*const u8; N] = core::array::from_fn(|n| unsafe { w.add(n * ws) });
    for g in 0..groups {
        // SAFETY: per the caller.
        unsafe {
            let x = _mm512_load_si512(a.add(g * BV * 64).cast());
            for (s, r) in acc.iter_mut().zip(&rows) {
                let wq = core::ptr::read_unaligned(r.add(4 * g).cast::<i32>());
                *s = _mm512_dpbusd_epi32(*s, x, _mm512_set1_epi32(wq));
            }
        }
    }
    acc
}

/// int8 convolution (stride 1) of output rows `oy0..oy0 + rows` into `sink`.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI/VBMI available; the input zero point in -128..=127; lengths of
/// `input` (`IC IH IW`), `w` (`OC IC K K`), `bias` (`OC`), `q` and the sink checked by the
/// caller; `scratch` holds `Dims::bytes_s8` bytes for this shape.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_s8<const N: usize>(
    dm: &Dims,
    input: &[i8],
    w: &[i8],
    bias: &[i32],
    q: &QuantArgs<'_>,
    oy0: usize,
    rows: usize,
    scratch: &mut [u8],
    mut sink: Sink<'_, i8>,
) {
    let zp = q.input_zero_point;
    let (l, groups, ws, pw) = (dm.l, dm.groups(), 4 * dm.groups(), dm.pw);
    let mut buf = scratch;
    let planes = take(&mut buf, dm.planes(rows));
    let pad = (zp + 128) as u8;
    fill_planes(dm, input, oy0, rows, planes, pad);
    // Weights with rows padded to whole groups and channels to whole blocks, zeros.
    let wcopy = take(&mut buf, dm.ocp8 * ws);
    let wsrc: &[u8] = if ws == l && dm.ocp8 == dm.oc {
        // SAFETY: i8 and u8 have the same layout.
        unsafe { core::slice::from_raw_parts(w.as_ptr().cast(), w.len()) }
    } else {
        wcopy.fill(0);
        for (o, row) in wcopy.chunks_exact_mut(ws).take(dm.oc).enumerate() {
            for (d, s) in row.iter_mut().zip(&w[o * l..(o + 1) * l]) {
                *d = *s as u8;
            }
        }
        wcopy
    };
    // Per channel: bias - (128 + zp) sum(w), then 6 requantisation constants.
    let consts = take(&mut buf, 7 * 4 * dm.ocp8);
    // SAFETY: 64-aligned bytes reinterpreted as i32.
    let consts: &mut [i32] =
        unsafe { core::slice::from_raw_parts_mut(consts.as_mut_ptr().cast(), 7 * dm.ocp8) };
    consts.fill(0);
    let ones = _mm512_set1_epi8(1);
    for o in 0..dm.oc {
        // sum(w) of the row: 1 x w in groups of 4 bytes (vpdpbusd), then across lanes.
        let row = &w[o * l..(o + 1) * l];
        let mut acc = _mm512_setzero_si512();
        for part in row.chunks(64) {
            // SAFETY: masked load of the part's bytes.
            let v = unsafe { _mm512_maskz_loadu_epi8(mask64(part.len()), part.as_ptr()) };
            acc = _mm512_dpbusd_epi32(acc, ones, v);
        }
        let sum = _mm512_reduce_add_epi32(acc);
        consts[o] = bias[o].wrapping_sub((128 + zp).wrapping_mul(sum));
        let (p, n) = (q.requant_pos[o], q.requant_neg[o]);
        let c = &mut consts[dm.ocp8 + 6 * o..][..6];
        c[0] = p.multiplier;
        c[1] = n.multiplier;
        c[2] = p.shift.max(0);
        c[3] = n.shift.max(0);
        c[4] = (-p.shift).clamp(0, 31);
        c[5] = (-n.shift).clamp(0, 31);
    }
    // Plane offset of each tap (k >= l: any valid offset, its weights are 0).
    let offs = take(&mut buf, 4 * ws);
    // SAFETY: 64-aligned bytes reinterpreted as u32.
    let offs: &mut [u32] = unsafe { core::slice::from_raw_parts_mut(offs.as_mut_ptr().cast(), ws) };
    let plane = dm.plane(rows);
    offs.fill(0);
    let mut kk = 0;
    for c in 0..dm.ic {
        for ky in 0..dm.k {
            for kx in 0..dm.k {
                offs[kk] = (c * plane + dm.d * (ky * pw + kx)) as u32;
                kk += 1;
            }
        }
    }
    let band = take(&mut buf, groups * BV * 64);
    let chunk = take(&mut buf, dm.ocp8 * dm.ostr);
    // SAFETY: u8 and i8 have the same layout.
    let chunk: &mut [i8] =
        unsafe { core::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast(), chunk.len()) };
    let zpo = _mm512_set1_epi32(q.output_zero_point);
    // idx[4 p + j] = 16 j + p: four 16-byte rows to [pixel][4 taps].
    let mut idx = [0u8; 64];
    for (i, v) in idx.iter_mut().enumerate() {
        *v = (16 * (i % 4) + i / 4) as u8;
    }
    // SAFETY: idx holds 64 bytes.
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    let (rows_out, rc) = match sink {
        Sink::Rows(_) => (rows, dm.chunk_rows(1)),
        Sink::Pool { pk, .. } => (rows / pk * pk, dm.chunk_rows(pk)),
    };
    let mut r0 = 0;
    while r0 < rows_out {
        let nr = rc.min(rows_out - r0);
        let nvec = (nr * pw).div_ceil(16);
        let mut v0 = 0;
        while v0 < nvec {
            let bv = BV.min(nvec - v0);
            // Activation band: [group][vector][pixel][4 taps].
            for g in 0..groups {
                for v in 0..bv {
                    let pos = r0 * pw + 16 * (v0 + v);
                    // SAFETY: tap offsets + positions stay inside the planes and their
                    // slack (`Dims::planes`); the band holds groups x BV x 64 bytes.
                    unsafe {
                        let src = |j: usize| planes.as_ptr().add(offs[4 * g + j] as usize + pos);
                        let x = _mm512_castsi128_si512(_mm_loadu_si128(src(0).cast()));
                        let x = _mm512_inserti32x4::<1>(x, _mm_loadu_si128(src(1).cast()));
                        let x = _mm512_inserti32x4::<2>(x, _mm_loadu_si128(src(2).cast()));
                        let x = _mm512_inserti32x4::<3>(x, _mm_loadu_si128(src(3).cast()));
                        let x = _mm512_permutexvar_epi8(idx, x);
                        _mm512_store_si512(band.as_mut_ptr().add((g * BV + v) * 64).cast(), x);
                    }
                }
            }
            let mut oc0 = 0;
            while oc0 < dm.ocp8 {
                let init: [__m512i; N] =
                    core::array::from_fn(|n| _mm512_set1_epi32(consts[oc0 + n]));
                for v in 0..bv {
                    // SAFETY: the band and the padded weights, in bounds by construction.
                    let acc = unsafe {
                        dot_s8::<N>(
                            band.as_ptr().add(v * 64),
                            groups,
                            wsrc.as_ptr().add(oc0 * ws),
                            ws,
                            &init,
                        )
                    };
                    for (n, a) in acc.iter().enumerate() {
                        let o = oc0 + n;
                        if o >= dm.oc {
                            break;
                        }
                        let c = &consts[dm.ocp8 + 6 * o..][..6];
                        let rq = Rq {
                            mp: _mm512_set1_epi32(c[0]),
                            mn: _mm512_set1_epi32(c[1]),
                            lp: _mm512_set1_epi32(c[2]),
                            ln: _mm512_set1_epi32(c[3]),
                            rp: _mm512_set1_epi32(c[4]),
                            rn: _mm512_set1_epi32(c[5]),
                        };
                        let r = _mm512_cvtsepi32_epi8(requant16(*a, &rq, zpo));
                        // SAFETY: 16 bytes at 16 (v0 + v) < ostr in channel o's row.
                        unsafe {
                            _mm_storeu_si128(
                                chunk.as_mut_ptr().add(o * dm.ostr + 16 * (v0 + v)).cast(),
                                r,
                            )
                        };
                    }
                }
                oc0 += N;
            }
            v0 += bv;
        }
        drain_s8(dm, chunk, r0, nr, rows, &mut sink);
        r0 += nr;
    }
}

/// Chunk rows to the float sink (see [`drain_s8`]); pooling folds as `Pool2d` does.
#[inline(always)]
fn drain_f32(dm: &Dims, o: &[f32], r0: usize, nr: usize, rows: usize, sink: &mut Sink<'_, f32>) {
    let (pw, ow) = (dm.pw, dm.ow);
    match sink {
        Sink::Rows(out) => {
            for oc in 0..dm.oc {
                for r in 0..nr {
                    let src = &o[oc * dm.ostr + r * pw..][..ow];
                    out[(oc * rows + r0 + r) * ow..][..ow].copy_from_slice(src);
                }
            }
        }
        Sink::Pool { kind, pk, out } => {
            let (pk, kind) = (*pk, *kind);
            let (ph, pwo) = (rows / pk, ow / pk);
            let inv = 1.0 / (pk * pk) as f32;
            for oc in 0..dm.oc {
                for pr in 0..nr / pk {
                    let base = oc * dm.ostr + pr * pk * pw;
                    let dst = &mut out[(oc * ph + r0 / pk + pr) * pwo..][..pwo];
                    if pk == 2 {
                        // SAFETY: AVX-512 F (engine), rows inside the chunk buffer.
                        unsafe { pool2_f32(&o[base..base + pw + ow], pw, kind, dst) };
                        continue;
                    }
                    for (px, y) in dst.iter_mut().enumerate() {
                        let at = |ky: usize, kx: usize| o[base + ky * pw + px * pk + kx];
                        let mut a = match kind {
                            PoolKind::Max => f32::NEG_INFINITY,
                            PoolKind::Avg => 0.0,
                        };
                        for ky in 0..pk {
                            for kx in 0..pk {
                                a = match kind {
                                    PoolKind::Max => a.max(at(ky, kx)),
                                    PoolKind::Avg => a + at(ky, kx),
                                };
                            }
                        }
                        *y = match kind {
                            PoolKind::Max => a,
                            PoolKind::Avg => a * inv,
                        };
                    }
                }
            }
        }
    }
}

/// 2 x 2 float pooling of two rows, as `Pool2d` folds each window: from 0 (average, then
/// times 1/4) or from minus infinity (maximum) over (0,0), (0,1), (1,0), (1,1).
#[target_feature(enable = "avx512f")]
unsafe fn pool2_f32(src: &[f32], pw: usize, kind: PoolKind, dst: &mut [f32]) {
    let n = dst.len();
    let mut e = [0i32; 16];
    for (i, v) in e.iter_mut().enumerate() {
        *v = 2 * i as i32;
    }
    // SAFETY: e holds 16 values.
    let ev = unsafe { _mm512_loadu_si512(e.as_ptr().cast()) };
    let od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    let mut x = 0;
    while x < n {
        let m = (n - x).min(16);
        let lo = mask64(2 * m.min(8)) as __mmask16;
        let hi = mask64(2 * m.saturating_sub(8)) as __mmask16;
        // SAFETY: 2m values of each row from 2x are inside `src` (masked loads).
        unsafe {
            let ld = |p: *const f32| {
                (
                    _mm512_maskz_loadu_ps(lo, p),
                    _mm512_maskz_loadu_ps(hi, p.add(16)),
                )
            };
            let (a0, a1) = ld(src.as_ptr().add(2 * x));
            let (b0, b1) = ld(src.as_ptr().add(pw + 2 * x));
            let a = _mm512_permutex2var_ps(a0, ev, a1);
            let b = _mm512_permutex2var_ps(a0, od, a1);
            let c = _mm512_permutex2var_ps(b0, ev, b1);
            let d = _mm512_permutex2var_ps(b0, od, b1);
            let r = match kind {
                PoolKind::Max => {
                    // f32::max(acc, v) keeps acc when v is NaN: maxps returns its second
                    // operand then.
                    let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
                    for v in [a, b, c, d] {
                        acc = _mm512_max_ps(v, acc);
                    }
                    acc
                }
                PoolKind::Avg => {
                    let mut acc = _mm512_setzero_ps();
                    for v in [a, b, c, d] {
                        acc = _mm512_add_ps(acc, v);
                    }
                    _mm512_mul_ps(acc, _mm512_set1_ps(0.25))
                }
            };
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(x), mask64(m) as __mmask16, r);
        }
        x += m;
    }
}

/// One output-channel block of one 16-pixel vector, f32: `N` accumulators from `init` plus
/// every tap (ic, ky, kx) in order: plane `ic` at `x + d (ky pw + kx)` times the weight of
/// each channel (rows of `l` at `w`), broadcast.
///
/// # Safety
/// AVX-512 F; the planes from `x` and the weights readable as described.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_f32<const N: usize, const K: usize, const D: usize>(
    x: *const f32,
    ic: usize,
    plane: usize,
    pw: usize,
    w: *const f32,
    l: usize,
    init: &[__m512; N],
) -> [__m512; N] {
    let mut acc = *init;
    for c in 0..ic {
        for ky in 0..K {
            for kx in 0..K {
                let k = (c * K + ky) * K + kx;
                // SAFETY: per the caller.
                unsafe {
                    let v = _mm512_loadu_ps(x.add(c * plane + D * (ky * pw + kx)));
                    for (n, s) in acc.iter_mut().enumerate() {
                        *s = _mm512_fmadd_ps(v, _mm512_set1_ps(*w.add(n * l + k)), *s);
                    }
                }
            }
        }
    }
    acc
}

/// Float convolution (stride 1) of output rows `oy0..oy0 + rows` into `sink`, weights
/// widened to f32, leaky ReLU `slope`.
///
/// # Safety
/// AVX-512 F/BW/VL and F16C available; lengths checked by the caller; `scratch` holds
/// `Dims::len_f32` values for this shape.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_f32<
    W: super::super::args::FloatWeight,
    const N: usize,
    const K: usize,
    const D: usize,
>(
    dm: &Dims,
    input: &[f32],
    w: &[W],
    bias: &[f32],
    slope: f32,
    oy0: usize,
    rows: usize,
    scratch: &mut [f32],
    mut sink: Sink<'_, f32>,
) {
    use super::super::args::TypedWeights;
    let (l, pw) = (dm.l, dm.pw);
    let mut buf = scratch;
    let planes = take(&mut buf, dm.planes(rows));
    fill_planes(dm, input, oy0, rows, planes, 0.0f32);
    // Weights as f32 `[ocp][l]` (a copy unless they already are, with whole blocks).
    let wcopy = take(&mut buf, dm.ocp * l);
    let wsrc: &[f32] = match W::typed(w) {
        TypedWeights::F32(f) if dm.ocp == dm.oc => f,
        typed => {
            wcopy.fill(0.0);
            match typed {
                TypedWeights::F16(h) => {
                    let mut i = 0;
                    while i + 16 <= h.len() {
                        // SAFETY: 16 f16 readable at i, 16 f32 writable at i (wcopy >= w).
                        unsafe {
                            let v = _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr().add(i).cast()));
                            _mm512_storeu_ps(wcopy.as_mut_ptr().add(i), v);
                        }
                        i += 16;
                    }
                    for (d, s) in wcopy[i..].iter_mut().zip(&h[i..]) {
                        *d = s.to_f32();
                    }
                }
                TypedWeights::F32(f) => wcopy[..f.len()].copy_from_slice(f),
            }
            wcopy
        }
    };
    let chunk = take(&mut buf, dm.ocp * dm.ostr);
    let plane = dm.plane(rows);
    let (rows_out, rc) = match sink {
        Sink::Rows(_) => (rows, dm.chunk_rows(1)),
        Sink::Pool { pk, .. } => (rows / pk * pk, dm.chunk_rows(pk)),
    };
    let (slope_v, zero) = (_mm512_set1_ps(slope), _mm512_setzero_ps());
    let mut r0 = 0;
    while r0 < rows_out {
        let nr = rc.min(rows_out - r0);
        let nvec = (nr * pw).div_ceil(16);
        let mut oc0 = 0;
        while oc0 < dm.ocp {
            let init: [__m512; N] =
                core::array::from_fn(|n| _mm512_set1_ps(bias.get(oc0 + n).copied().unwrap_or(0.0)));
            for v in 0..nvec {
                let pos = r0 * pw + 16 * v;
                // SAFETY: planes (with slack) and padded weights, in bounds by construction.
                let acc = unsafe {
                    dot_f32::<N, K, D>(
                        planes.as_ptr().add(pos),
                        dm.ic,
                        plane,
                        pw,
                        wsrc.as_ptr().add(oc0 * l),
                        l,
                        &init,
                    )
                };
                for (n, a) in acc.iter().enumerate() {
                    let o = oc0 + n;
                    if o >= dm.oc {
                        break;
                    }
                    let neg = _mm512_cmplt_ps_mask(*a, zero);
                    let y = _mm512_mask_mul_ps(*a, neg, *a, slope_v);
                    // SAFETY: 16 values at 16 v < ostr in channel o's row.
                    unsafe { _mm512_storeu_ps(chunk.as_mut_ptr().add(o * dm.ostr + 16 * v), y) };
                }
            }
            oc0 += N;
        }
        drain_f32(dm, chunk, r0, nr, rows, &mut sink);
        r0 += nr;
    }
}
