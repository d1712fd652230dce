//! The 8 symmetries of the square pixel grid (the dihedral group D4): identity,
//! three rotations by 90 degrees, and four reflections. They are exact on a pixel
//! grid, unlike the interpolated rotations the lab found harmful, and a cluster's
//! mass does not depend on its orientation on the sky.

/// Number of distinct transforms.
pub const N_TRANSFORMS: usize = 8;

/// Where output pixel (y, x) of transform `k` reads from, for a square of side `n`.
#[inline]
pub fn source_pixel(k: usize, n: usize, y: usize, x: usize) -> (usize, usize) {
    let m = n - 1;
    match k & 7 {
        0 => (y, x),
        1 => (x, m - y),     // rotate 90
        2 => (m - y, m - x), // rotate 180
        3 => (m - x, y),     // rotate 270
        4 => (y, m - x),     // mirror left-right
        5 => (m - y, x),     // mirror up-down
        6 => (x, y),         // transpose
        _ => (m - x, m - y), // anti-transpose
    }
}

/// The transform that undoes `k`.
pub fn inverse(k: usize) -> usize {
    match k & 7 {
        1 => 3,
        3 => 1,
        other => other,
    }
}

/// Apply transform `k` to every plane of a `[planes][n][n]` buffer.
pub fn apply(k: usize, n: usize, src: &[f32], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len());
    for (sp, dp) in src.chunks_exact(n * n).zip(dst.chunks_exact_mut(n * n)) {
        for y in 0..n {
            for x in 0..n {
                let (sy, sx) = source_pixel(k, n, y, x);
                dp[y * n + x] = sp[sy * n + sx];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: usize, planes: usize) -> Vec<f32> {
        (0..planes * n * n)
            .map(|i| (i * 7919 % 1000) as f32)
            .collect()
    }

    #[test]
    fn the_eight_transforms_are_distinct() {
        let n = 5;
        let img = image(n, 2);
        let outs: Vec<Vec<f32>> = (0..N_TRANSFORMS)
            .map(|k| {
                let mut o = vec![0.0; img.len()];
                apply(k, n, &img, &mut o);
                o
            })
            .collect();
        for i in 0..N_TRANSFORMS {
            for j in 0..i {
                assert_ne!(outs[i], outs[j], "transforms {i} and {j} coincide");
            }
        }
    }

    #[test]
    fn each_transform_is_inverted_and_keeps_the_pixel_multiset() {
        let n = 50;
        let img = image(n, 3);
        for k in 0..N_TRANSFORMS {
            let (mut a, mut b) = (vec![0.0; img.len()], vec![0.0; img.len()]);
            apply(k, n, &img, &mut a);
            apply(inverse(k), n, &a, &mut b);
            assert_eq!(b, img, "transform {k}");
            let (mut s1, mut s2) = (img.clone(), a.clone());
            s1.sort_by(f32::total_cmp);
            s2.sort_by(f32::total_cmp);
            assert_eq!(s1, s2, "transform {k} must only move pixels");
        }
    }

    /// Rotations compose as the group says: 90 + 90 = 180, and four quarter turns are the identity.
    #[test]
    fn rotations_compose() {
        let n = 6;
        let img = image(n, 1);
        let rot = |k: usize, v: &[f32]| {
            let mut o = vec![0.0; v.len()];
            apply(k, n, v, &mut o);
            o
        };
        assert_eq!(rot(1, &rot(1, &img)), rot(2, &img));
        assert_eq!(rot(1, &rot(1, &rot(1, &rot(1, &img)))), img);
    }
}
