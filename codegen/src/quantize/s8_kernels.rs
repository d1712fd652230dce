//! The int8 interpreter ([`QuantModel::forward_s8`], in `arch`) of models quantised here,
//! against the runtime's s8 kernels chained by hand, bit for bit (`arch::interp` checks the
//! float paths of the same test models the same way).

use super::{QOp, QuantModel, calibrate_preprocessed, quantize};
use crate::interp::{FloatPath, Traced};
use crate::testutil::{Rng, model_a, model_b, vals};
use runtime::kernels::{conv2d::Conv2d, dense::Dense, pool::Pool2d};

macro_rules! s8 {
    ($k:ty, $len:expr, $x:expr, $o:expr) => {{
        let mut y = vec![0i8; $len];
        <$k>::s8(&$x, &$o.weight, &$o.bias, &$o.args(), &mut y).unwrap();
        y
    }};
}

/// The runtime's s8 kernels chained by hand with the quantised model's tables.
/// (The standalone leaky ReLU has no runtime kernel: its output is checked to +-1
/// against real arithmetic, and the interpreter's own output `tr` feeds the rest.)
fn runtime_s8(
    q: &QuantModel,
    which: char,
    x: &[f32],
    z: f32,
    tr: &[Traced<i8>],
) -> (Vec<Vec<i8>>, Vec<i32>) {
    let qc = |i: usize| match &q.ops[i] {
        QOp::Conv2d(c) => c,
        _ => panic!("op {i}"),
    };
    let zq = |i: usize| match &q.ops[i] {
        QOp::FlattenConcatZ { z_q } => z_q.quantize(z),
        _ => panic!("op {i}"),
    };
    let QOp::Head(head) = q.ops.last().unwrap() else {
        panic!("head")
    };
    let mut t = vec![
        x.iter()
            .map(|v| q.tensor_q[0].quantize(*v))
            .collect::<Vec<i8>>(),
    ];
    if which == 'a' {
        type C0 = Conv2d<3, 13, 12, 4, 3, 1, 1, 1>;
        type C2 = Conv2d<4, 6, 6, 5, 3, 1, 2, 2>;
        type C3 = Conv2d<5, 6, 6, 6, 2, 1, 1, 0>;
        t.push(s8!(C0, C0::OUT_LEN, t[0], qc(0)));
        let mut p = vec![0i8; Pool2d::<4, 13, 12, 2>::OUT_LEN];
        Pool2d::<4, 13, 12, 2>::avg_s8(&t[1], &mut p).unwrap();
        t.push(p);
        t.push(s8!(C2, C2::OUT_LEN, t[2], qc(2)));
        t.push(s8!(C3, C3::OUT_LEN, t[3], qc(3)));
        let mut p = vec![0i8; Pool2d::<6, 5, 5, 2>::OUT_LEN];
        Pool2d::<6, 5, 5, 2>::max_s8(&t[4], &mut p).unwrap();
        t.push(p.clone());
        p.push(zq(5));
        t.push(p);
        let QOp::Dense(qd) = &q.ops[6] else {
            panic!("op 6")
        };
        t.push(s8!(Dense<25, 7>, 7, t[6], qd));
    } else {
        type C0 = Conv2d<2, 7, 7, 3, 3, 2, 1, 0>;
        t.push(s8!(C0, C0::OUT_LEN, t[0], qc(0)));
        let mut p = vec![0i8; 3];
        Pool2d::<3, 3, 3, 3>::avg_s8(&t[1], &mut p).unwrap();
        t.push(p);
        let QOp::LeakyRelu(l) = &q.ops[2] else {
            panic!("op 2")
        };
        // Independent reference for the standalone leaky ReLU: real arithmetic, +-1.
        let v: Vec<i8> = t[2]
            .iter()
            .map(|x| {
                let r = l.in_q.dequantize(*x);
                let r = if r < 0.0 { 0.25 * r } else { r };
                l.out_q.quantize(r)
            })
            .collect();
        for (a, b) in v.iter().zip(&tr[3].data) {
            assert!(
                (i32::from(*a) - i32::from(*b)).abs() <= 1,
                "leaky relu: {a} vs {b}"
            );
        }
        let mut v = tr[3].data.clone();
        t.push(v.clone());
        v.push(zq(3));
        t.push(v);
    }
    let mut acc = vec![0i32; 2];
    match which {
        'a' => Dense::<7, 2>::acc_s8(
            &t[7],
            &head.weight,
            &head.bias,
            head.in_q.zero_point,
            &mut acc,
        )
        .unwrap(),
        _ => Dense::<4, 2>::acc_s8(
            &t[4],
            &head.weight,
            &head.bias,
            head.in_q.zero_point,
            &mut acc,
        )
        .unwrap(),
    }
    (t, acc)
}

#[test]
fn int8_path_equals_runtime_s8_kernels_bit_for_bit() {
    let mut rng = Rng::new(12);
    for (which, m) in [('a', model_a(&mut rng)), ('b', model_b(&mut rng))] {
        let draw = |rng: &mut Rng| {
            (
                vals(rng, m.input.len(), 2.0)
                    .iter()
                    .map(|v| v + 0.5)
                    .collect::<Vec<f32>>(),
                rng.uniform(-1.5, 1.5),
            )
        };
        let cal: Vec<_> = (0..20)
            .map(|_| {
                let (x, z) = draw(&mut rng);
                (x, vec![z])
            })
            .collect();
        let q = quantize(&m, &calibrate_preprocessed(&m, &cal).unwrap()).unwrap();
        assert!(
            q.tensor_q.iter().any(|p| p.zero_point != -128),
            "asymmetric ranges exercise zero points"
        );
        for _ in 0..5 {
            let (x, z) = draw(&mut rng);
            let mut tr = Vec::new();
            let head = q.forward_s8(&x, &[z], Some(&mut tr)).unwrap();
            let (want, acc) = runtime_s8(&q, which, &x, z, &tr);
            assert_eq!(tr.len(), want.len());
            for (t, w) in tr.iter().zip(&want) {
                assert_eq!(&t.data, w, "{which} {}", t.name);
            }
            assert_eq!(head.acc, acc);
            let QOp::Head(h) = q.ops.last().unwrap() else {
                panic!()
            };
            for (o, a) in acc.iter().enumerate() {
                assert_eq!(head.real[o], h.in_q.scale * h.w_scale[o] * *a as f32);
            }
            // And the quantised network approximates the real one.
            let f = m.forward_f32(&x, &[z], FloatPath::F32, None).unwrap();
            for o in 0..2 {
                assert!(
                    (head.real[o] - f[o]).abs() < 0.05 * (1.0 + f[o].abs()),
                    "{which}: {:?} vs {f:?}",
                    head.real
                );
            }
        }
    }
}
