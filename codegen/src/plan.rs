//! The memory plan every generated model follows: one activation arena used from both
//! ends. Step `k` reads its input from one end and writes its output to the other, so
//! the arena needs the largest `input + output` of any step. The first step turns the
//! caller's raw u16 counts into the network input; when the network starts with a
//! pooling layer that step also pools (fused), so the full-resolution input is never
//! stored. The head writes its two outputs to the stack, not the arena.
//!
//! A convolution directly followed by a pooling layer runs as one fused step
//! (convolution, activation and pooling over a line buffer of `pool size` output rows,
//! [`runtime::kernels::conv2d::Conv2d::s8_pooled`]): its pre-pooling map is never stored
//! whole, and the step needs `input + line buffer + pooled output`.
//!
//! A model that starts with a pooling and then a fused convolution + pooling can also run
//! with its first convolution streaming its input ([`stream`]): the preprocessing produces
//! the input rows as the convolution's window of rows needs them
//! ([`runtime::kernels::conv2d::Conv2d::s8_pooled_streamed`]), so the preprocessed input is
//! never stored and that step needs `window + line buffer + pooled output`. The generated
//! code carries both plans (`ARENA_WHOLE`, `ARENA_STREAMED`); the runtime's `STREAM_INPUT`
//! picks the one `infer` uses.

use crate::model::{FoldedModel, Op};
use anyhow::Result;

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Index of the op this step runs (`None`: preprocessing alone).
    pub op: Option<usize>,
    /// Whether the preprocessing of the counts is fused into this step.
    pub preprocess: bool,
    /// Index of the pooling op fused into this (convolution) step, if any.
    pub pool: Option<usize>,
    /// Input elements read from the arena (0 when the input is the raw counts).
    pub in_len: usize,
    /// Output elements written to the arena (0 for the head).
    pub out_len: usize,
    /// Line-buffer elements of a fused convolution + pooling (else 0).
    pub line_len: usize,
    /// True when the input sits at the front of the arena (the output goes to the back).
    pub input_at_front: bool,
}

impl Step {
    /// Arena elements this step needs.
    pub fn need(&self) -> usize {
        self.in_len + self.line_len + self.out_len
    }
}

/// The schedule of a folded model, with convolution + pooling fused.
pub fn steps(m: &FoldedModel) -> Result<Vec<Step>> {
    steps_with(m, true)
}

/// The schedule, with (`fuse`) or without convolution + pooling fusion (the latter is what
/// the previous plan did: every op's full output stored in the arena).
pub fn steps_with(m: &FoldedModel, fuse: bool) -> Result<Vec<Step>> {
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
            pool: None,
            in_len: 0,
            out_len: shapes[0].len(),
            line_len: 0,
            input_at_front: front,
        });
        front = !front;
    }
    let mut i = 0;
    while i < n {
        let fused = fuse_first && i == 0;
        let pool = match (&m.ops[i], m.ops.get(i + 1)) {
            (Op::Conv2d(c), Some(Op::Pool2d { size, .. })) if fuse && i + 2 < n => {
                Some((i + 1, c.geom.filters * size * shapes[i + 1].w))
            }
            _ => None,
        };
        let last = pool.map_or(i, |(p, _)| p);
        out.push(Step {
            op: Some(i),
            preprocess: fused,
            pool: pool.map(|(p, _)| p),
            in_len: if fused { 0 } else { shapes[i].len() },
            out_len: if last + 1 == n {
                0
            } else {
                shapes[last + 1].len()
            },
            line_len: pool.map_or(0, |(_, l)| l),
            input_at_front: front,
        });
        front = !front;
        i = last + 1;
    }
    Ok(out)
}

/// Arena length in elements (f32 for the float paths, i8 for int8).
pub fn arena_len(steps: &[Step]) -> usize {
    steps.iter().map(Step::need).max().unwrap_or(0)
}

/// The first two steps of a plan merged into one whose convolution streams its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// The streamed convolution's op (its pooling is `step.pool`).
    pub conv: usize,
    /// The pooling window of that step.
    pub pool_size: usize,
    /// Input rows of every channel the window holds (`Conv2d::window_rows`).
    pub rows: usize,
    /// The merged step: preprocessing fused, `in_len` the window's length.
    pub step: Step,
}

/// The streamed form of `steps` (from [`steps`]): `Some` when the model starts with a pooling
/// (fused with the preprocessing) followed by a convolution fused with its pooling whose
/// padding is a multiple of its stride (the window's convolution then computes the layer's
/// rows exactly).
pub fn stream(m: &FoldedModel, steps: &[Step]) -> Result<Option<Stream>> {
    let shapes = m.shapes()?;
    let [first, second, ..] = steps else {
        return Ok(None);
    };
    let (Some(0), true, Some(Op::Pool2d { .. })) = (first.op, first.preprocess, m.ops.first())
    else {
        return Ok(None);
    };
    let (Some(i), Some(pi)) = (second.op, second.pool) else {
        return Ok(None);
    };
    let (Op::Conv2d(c), Op::Pool2d { size, .. }) = (&m.ops[i], &m.ops[pi]) else {
        return Ok(None);
    };
    let g = c.geom;
    if !g.pad().is_multiple_of(g.stride) {
        return Ok(None);
    }
    let rows = g.dilation * (g.kernel - 1) + 1 + (size - 1) * g.stride;
    let input = shapes[i];
    Ok(Some(Stream {
        conv: i,
        pool_size: *size,
        rows,
        step: Step {
            preprocess: true,
            in_len: input.c * rows * input.w,
            ..*second
        },
    }))
}

/// Arena length of the streamed plan: the merged step and every step after the two it
/// replaces.
pub fn arena_len_streamed(steps: &[Step], s: &Stream) -> usize {
    steps
        .iter()
        .skip(2)
        .map(Step::need)
        .chain([s.step.need()])
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::testutil::e30_dir;

    /// edge, by hand. Unfused: the fused first pool writes 10x25x25 = 6,250 values; the
    /// first convolution reads them and writes 16x25x25 = 10,000: 16,250 is the peak.
    /// Fused: that convolution pools as it goes, writing 16x12x12 = 2,304 values through a
    /// line buffer of 2 rows of 16x25: 6,250 + 800 + 2,304 = 9,354.
    #[test]
    fn edge_plan_by_hand() {
        let m = Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap();
        let s = steps_with(&m, false).unwrap();
        assert_eq!(s.len(), m.ops.len());
        assert!(s[0].preprocess && s[0].in_len == 0 && s[0].out_len == 6_250);
        assert_eq!((s[1].in_len, s[1].out_len), (6_250, 10_000));
        assert_eq!(s.last().unwrap().out_len, 0);
        assert_eq!(arena_len(&s), 16_250);
        let f = steps(&m).unwrap();
        // pool, conv+pool x3, concat, dense, head
        assert_eq!(f.len(), 7);
        assert_eq!(
            (f[1].op, f[1].pool, f[1].in_len, f[1].line_len, f[1].out_len),
            (Some(1), Some(2), 6_250, 800, 2_304)
        );
        assert_eq!(
            (f[2].in_len, f[2].line_len, f[2].out_len),
            (2_304, 768, 1_152)
        );
        assert_eq!(
            (f[3].in_len, f[3].line_len, f[3].out_len),
            (1_152, 384, 288)
        );
        assert_eq!(arena_len(&f), 9_354);
        // Streamed: the first convolution reads a window of 3 + 1 = 4 rows of the 10 x 25
        // pooled input, 1,000 values, instead of all 6,250: 1,000 + 800 + 2,304 = 4,104;
        // the second convolution's 2,304 + 768 + 1,152 = 4,224 is then the peak.
        let st = stream(&m, &f).unwrap().unwrap();
        assert_eq!((st.conv, st.pool_size, st.rows), (1, 2, 4));
        assert_eq!(
            (st.step.in_len, st.step.line_len, st.step.out_len),
            (1_000, 800, 2_304)
        );
        assert!(st.step.preprocess && st.step.input_at_front == f[1].input_at_front);
        assert_eq!(arena_len_streamed(&f, &st), 4_224);
        for s in [&s, &f] {
            assert!(
                s.windows(2)
                    .all(|w| w[0].input_at_front != w[1].input_at_front)
            );
        }
    }
}
