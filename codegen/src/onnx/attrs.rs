//! Convolution and pooling attributes of an ONNX node, checked against what the runtime's kernels
//! compute: square kernels and windows, one stride and one dilation for both axes, no groups,
//! symmetric "same" padding (odd kernel, stride 1) or none, pooling windows equal to their stride
//! with the trailing rows and columns dropped (ONNX's floor mode).
//!
//! Padding is resolved to numbers first, whatever form the file uses (explicit `pads`, or
//! `auto_pad` SAME_UPPER / SAME_LOWER / VALID computed on the actual input size), then compared:
//! explicit pads equal to `dilation (k - 1) / 2` on every side with stride 1 are our "same", zero
//! pads are "valid"; anything else is refused.

use crate::arch::{Padding, Shape};
use anyhow::{Result, bail};
use onnx_ir::padding::{AutoPad, PaddingConfig2d};

/// Pads `(top, left, bottom, right)` that `auto_pad` / `pads` give on input `s`.
fn resolve_pads(
    auto_pad: &AutoPad,
    pads: &PaddingConfig2d,
    s: Shape,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> [usize; 4] {
    let same = |n: usize, k: usize, st: usize, d: usize| {
        let ext = d * (k - 1) + 1;
        let out = n.div_ceil(st);
        ((out - 1) * st + ext).saturating_sub(n)
    };
    match auto_pad {
        AutoPad::NotSet => {
            let (t, l, b, r) = pads.as_tuple();
            [t, l, b, r]
        }
        AutoPad::Valid => [0; 4],
        AutoPad::SameUpper | AutoPad::SameLower => {
            let th = same(s.h, kernel[0], stride[0], dilation[0]);
            let tw = same(s.w, kernel[1], stride[1], dilation[1]);
            // SAME_UPPER puts the extra pad at the end, SAME_LOWER at the beginning.
            if *auto_pad == AutoPad::SameUpper {
                [th / 2, tw / 2, th - th / 2, tw - tw / 2]
            } else {
                [th - th / 2, tw - tw / 2, th / 2, tw / 2]
            }
        }
    }
}

fn pads_text(auto_pad: &AutoPad, p: [usize; 4]) -> String {
    match auto_pad {
        AutoPad::NotSet => format!("pads {p:?}"),
        other => format!("auto_pad {other} (pads {p:?} on this input)"),
    }
}

/// A convolution's kernel side, stride, dilation and padding mode, or why the runtime cannot run it.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    auto_pad: &AutoPad,
    pads: &PaddingConfig2d,
    s: Shape,
) -> Result<(usize, usize, usize, Padding)> {
    const OK: &str = "supported: square kernels, the same stride and dilation on both axes, group 1, and padding either none (\"valid\") or dilation*(k-1)/2 on every side with an odd kernel and stride 1 (\"same\")";
    if groups != 1 {
        bail!("group {groups} (grouped or depthwise convolution); {OK}");
    }
    if kernel[0] != kernel[1] {
        bail!("kernel {}x{} is not square; {OK}", kernel[0], kernel[1]);
    }
    if stride[0] != stride[1] {
        bail!("strides {stride:?} differ per axis; {OK}");
    }
    if dilation[0] != dilation[1] {
        bail!("dilations {dilation:?} differ per axis; {OK}");
    }
    let (k, st, d) = (kernel[0], stride[0], dilation[0]);
    if k == 0 || st == 0 || d == 0 || k > 64 || st > 64 || d > 64 {
        bail!("kernel {k}, stride {st}, dilation {d}: each must be 1 to 64");
    }
    let p = resolve_pads(auto_pad, pads, s, kernel, stride, dilation);
    if p == [0; 4] {
        return Ok((k, st, d, Padding::Valid));
    }
    if p[0] != p[2] || p[1] != p[3] || p[0] != p[1] {
        bail!(
            "{} with a {k}x{k} kernel pad asymmetrically (top, left, bottom, right); {OK}",
            pads_text(auto_pad, p)
        );
    }
    let same = d * (k - 1) / 2;
    if k % 2 == 0 || p[0] != same {
        bail!(
            "{} with a {k}x{k} kernel and dilation {d}: only \"same\" padding ({} on every side for an odd kernel) or none is supported; {OK}",
            pads_text(auto_pad, p),
            if k % 2 == 1 {
                same.to_string()
            } else {
                "impossible".into()
            }
        );
    }
    if st != 1 {
        bail!(
            "{} with stride {st}: \"same\" padding needs stride 1 (a strided convolution must be unpadded); {OK}",
            pads_text(auto_pad, p)
        );
    }
    Ok((k, st, d, Padding::Same))
}

/// A pooling window (equal to its stride), or why the runtime cannot run it.
#[allow(clippy::too_many_arguments)]
pub fn pool(
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
    auto_pad: &AutoPad,
    pads: &PaddingConfig2d,
    s: Shape,
) -> Result<usize> {
    const OK: &str = "supported: a square window equal to its stride, no padding, no dilation, floor mode (the runtime drops trailing rows and columns)";
    if kernel[0] != kernel[1] {
        bail!("window {}x{} is not square; {OK}", kernel[0], kernel[1]);
    }
    if stride[0] != stride[1] {
        bail!("strides {stride:?} differ per axis; {OK}");
    }
    if dilation != [1, 1] {
        bail!("dilations {dilation:?}; {OK}");
    }
    let (k, st) = (kernel[0], stride[0]);
    if k != st {
        bail!("window {k} with stride {st}; {OK}");
    }
    if k == 0 || k > s.h || k > s.w {
        bail!("window {k} does not fit the {}x{} input; {OK}", s.h, s.w);
    }
    let p = resolve_pads(auto_pad, pads, s, kernel, stride, dilation);
    if p != [0; 4] {
        bail!("{}; {OK}", pads_text(auto_pad, p));
    }
    // ceil_mode only changes the result when a partial window remains.
    if ceil_mode && !(s.h.is_multiple_of(k) && s.w.is_multiple_of(k)) {
        bail!(
            "ceil_mode=1 on a {}x{} input with window {k} keeps a partial window; {OK}",
            s.h,
            s.w
        );
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Shape = Shape { c: 4, h: 9, w: 9 };

    fn c(
        k: [usize; 2],
        st: usize,
        d: usize,
        auto: AutoPad,
        p: [usize; 4],
    ) -> Result<(usize, usize, usize, Padding)> {
        let pads = if p == [0; 4] {
            PaddingConfig2d::Valid
        } else {
            PaddingConfig2d::Explicit(p[0], p[1], p[2], p[3])
        };
        conv(k, [st, st], [d, d], 1, &auto, &pads, S)
    }

    #[test]
    fn same_and_valid_padding_in_every_spelling() {
        use AutoPad::*;
        assert_eq!(c([3, 3], 1, 1, NotSet, [1; 4]).unwrap().3, Padding::Same);
        assert_eq!(c([5, 5], 1, 2, NotSet, [4; 4]).unwrap().3, Padding::Same);
        assert_eq!(c([3, 3], 1, 1, SameUpper, [0; 4]).unwrap().3, Padding::Same);
        assert_eq!(c([3, 3], 1, 2, SameLower, [0; 4]).unwrap().3, Padding::Same);
        assert_eq!(
            c([3, 3], 2, 1, NotSet, [0; 4]).unwrap(),
            (3, 2, 1, Padding::Valid)
        );
        assert_eq!(c([2, 2], 1, 1, Valid, [0; 4]).unwrap().3, Padding::Valid);
        // A 1x1 kernel with SAME needs no padding at all.
        assert_eq!(
            c([1, 1], 1, 1, SameUpper, [0; 4]).unwrap().3,
            Padding::Valid
        );
    }

    #[test]
    fn refusals_say_why() {
        use AutoPad::*;
        for (r, word) in [
            (c([3, 1], 1, 1, NotSet, [0; 4]), "not square"),
            (c([2, 2], 1, 1, SameUpper, [0; 4]), "asymmetrically"),
            (c([3, 3], 1, 1, NotSet, [1, 1, 0, 0]), "asymmetrically"),
            (c([3, 3], 1, 1, NotSet, [2; 4]), "\"same\""),
            (c([3, 3], 2, 1, NotSet, [1; 4]), "stride 2"),
            // SAME with stride 2 pads symmetrically on 9 pixels: still refused for the stride.
            (c([3, 3], 2, 1, SameUpper, [0; 4]), "stride 2"),
        ] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("supported"), "{e}");
        }
        let pads = PaddingConfig2d::Valid;
        let e = conv([3, 3], [1, 1], [1, 1], 2, &NotSet, &pads, S).unwrap_err();
        assert!(e.to_string().contains("group 2"));
    }

    #[test]
    fn pools() {
        use AutoPad::*;
        let v = PaddingConfig2d::Valid;
        assert_eq!(
            pool([3, 3], [3, 3], [1, 1], false, &NotSet, &v, S).unwrap(),
            3
        );
        // ceil_mode is harmless when the window divides the input; SAME pads nothing then.
        assert_eq!(
            pool([3, 3], [3, 3], [1, 1], true, &SameUpper, &v, S).unwrap(),
            3
        );
        assert!(pool([2, 2], [2, 2], [1, 1], true, &NotSet, &v, S).is_err());
        assert!(pool([2, 2], [2, 2], [1, 1], false, &SameUpper, &v, S).is_err());
        assert!(pool([3, 3], [2, 2], [1, 1], false, &NotSet, &v, S).is_err());
        let p = PaddingConfig2d::Explicit(1, 1, 1, 1);
        assert!(pool([2, 2], [2, 2], [1, 1], false, &NotSet, &p, S).is_err());
    }
}
