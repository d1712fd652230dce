//! The memory plan every generated model follows: one activation arena used from both
//! ends. Step `k` reads its input from one end and writes its output to the other, so
//! the arena needs the largest `input + output` of any step. The first step turns the
//! caller's raw u16 counts into the network input; when the network starts with a
//! pooling layer that step also pools (fused), so the full-resolution input is never
//! stored. The head writes its two outputs to the stack, not the arena.

use crate::model::{FoldedModel, Op};
use anyhow::Result;

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Index of the op this step runs (`None`: preprocessing alone).
    pub op: Option<usize>,
    /// Whether the preprocessing of the counts is fused into this step.
    pub preprocess: bool,
    /// Input elements read from the arena (0 when the input is the raw counts).
    pub in_len: usize,
    /// Output elements written to the arena (0 for the head).
    pub out_len: usize,
    /// True when the input sits at the front of the arena (the output goes to the back).
    pub input_at_front: bool,
}

/// The schedule of a folded model.
pub fn steps(m: &FoldedModel) -> Result<Vec<Step>> {
    let shapes = m.shapes()?;
    let n = m.ops.len();
    let fuse_first = matches!(m.ops.first(), Some(Op::Pool2d { .. }));
    let mut out = Vec::new();
    // The preprocessing writes to the front (as if its empty input were at the back).
    let mut front = false;
    if !fuse_first {
        out.push(Step {
            op: None,
            preprocess: true,
            in_len: 0,
            out_len: shapes[0].len(),
            input_at_front: front,
        });
        front = !front;
    }
    for i in 0..n {
        let fused = fuse_first && i == 0;
        out.push(Step {
            op: Some(i),
            preprocess: fused,
            in_len: if fused { 0 } else { shapes[i].len() },
            out_len: if i + 1 == n { 0 } else { shapes[i + 1].len() },
            input_at_front: front,
        });
        front = !front;
    }
    Ok(out)
}

/// Arena length in elements (f32 for the float paths, i8 for int8).
pub fn arena_len(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| s.in_len + s.out_len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::testutil::e30_dir;

    /// edge: the fused first pool writes 10x25x25 = 6,250 values; the first convolution
    /// then reads them and writes 16x25x25 = 10,000: 16,250 is the peak, by hand.
    #[test]
    fn edge_plan_by_hand() {
        let m = Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap();
        let s = steps(&m).unwrap();
        assert_eq!(s.len(), m.ops.len());
        assert!(s[0].preprocess && s[0].in_len == 0 && s[0].out_len == 6_250);
        assert_eq!((s[1].in_len, s[1].out_len), (6_250, 10_000));
        assert_eq!(s.last().unwrap().out_len, 0);
        assert_eq!(arena_len(&s), 16_250);
        assert!(
            s.windows(2)
                .all(|w| w[0].input_at_front != w[1].input_at_front)
        );
    }
}
