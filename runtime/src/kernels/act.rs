//! Element-wise steps between layers: a stand-alone leaky ReLU (when it cannot be fused
//! into the preceding layer) and the flatten-and-append-scalars concatenation.

use crate::Error;
use crate::quant::Requant;

fn same_len(a: usize, b: usize) -> Result<(), Error> {
    if a == b {
        Ok(())
    } else {
        Err(Error::BadLength {
            expected: a,
            got: b,
        })
    }
}

/// `max(x, slope x)` written as `if x < 0 { x slope } else { x }` (the fused kernels' form).
///
/// ```
/// use runtime::kernels::act::leaky_f32;
/// let mut y = [0.0; 2];
/// leaky_f32(&[-2.0, 3.0], 0.25, &mut y).unwrap();
/// assert_eq!(y, [-0.5, 3.0]);
/// ```
pub fn leaky_f32(input: &[f32], slope: f32, out: &mut [f32]) -> Result<(), Error> {
    same_len(input.len(), out.len())?;
    for (x, y) in input.iter().zip(out.iter_mut()) {
        *y = if *x < 0.0 { *x * slope } else { *x };
    }
    Ok(())
}

/// int8 leaky ReLU: `x - zp_in` rescaled by `pos` (>= 0) or `neg` (< 0), plus `zp_out`.
pub fn leaky_s8(
    input: &[i8],
    input_zero_point: i32,
    pos: Requant,
    neg: Requant,
    output_zero_point: i32,
    out: &mut [i8],
) -> Result<(), Error> {
    same_len(input.len(), out.len())?;
    for (x, y) in input.iter().zip(out.iter_mut()) {
        let v = i32::from(*x) - input_zero_point;
        let r = if v >= 0 { pos } else { neg };
        *y = (r.apply(v) + output_zero_point).clamp(-128, 127) as i8;
    }
    Ok(())
}

/// `out = [features..., scalars...]`: the flattened features, then the network's scalar
/// inputs (the redshift and any auxiliary ones, preprocessed, quantised for int8).
///
/// ```
/// use runtime::kernels::act::concat;
/// let mut y = [0i8; 4];
/// concat(&[4, 5], &[6, 7], &mut y).unwrap();
/// assert_eq!(y, [4, 5, 6, 7]);
/// assert!(concat(&[4, 5], &[6], &mut y).is_err());
/// ```
pub fn concat<T: Copy>(features: &[T], scalars: &[T], out: &mut [T]) -> Result<(), Error> {
    same_len(features.len() + scalars.len(), out.len())?;
    let (head, tail) = out.split_at_mut(features.len());
    head.copy_from_slice(features);
    tail.copy_from_slice(scalars);
    Ok(())
}
