//! Size and cost of a folded model per layer and per dtype.
//!
//! - MACs, parameters and receptive fields come from [`arch::analyze`](crate::arch::analyze)
//!   on the folded op list (BatchNorm folded, so it adds no parameter).
//! - Weight bytes: f32 stores weights and biases as f32; f16 stores weights as f16
//!   and biases as f32 (what the runtime's f16 kernels take); int8 stores weights as
//!   1 B, and per output channel a 4 B bias plus two 8 B requantisation entries
//!   (multiplier and shift; `requant_pos` and `requant_neg`, equal without an
//!   activation). The head has a 4 B bias and a 4 B f32 dequantisation scale per output;
//!   a standalone leaky ReLU two entries. The blobs add the model constants, the int8
//!   activation parameters and their headers (see `codegen export`'s report).
//! - Peak activation RAM: the arena of the generated code's memory plan
//!   ([`plan`](crate::plan)): the largest input + output of any step, with the first
//!   pooling fused into the preprocessing. f32 and f16 keep f32 activations (4 B), int8
//!   1 B ones. The raw u16 input cube (the caller's) is counted separately.

use crate::arch::{Shape, analyze};
use crate::model::{FoldedModel, Op};
use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::fmt;

/// Bytes for each deployment dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bytes {
    /// f32 weights and activations.
    pub f32: u64,
    /// f16 weights, f32 activations.
    pub f16: u64,
    /// int8 weights and activations.
    pub int8: u64,
}

impl std::ops::Add for Bytes {
    type Output = Bytes;
    fn add(self, o: Bytes) -> Bytes {
        Bytes {
            f32: self.f32 + o.f32,
            f16: self.f16 + o.f16,
            int8: self.int8 + o.int8,
        }
    }
}

/// One op's line.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    /// Op index in the folded model.
    pub index: usize,
    /// Description.
    pub op: String,
    /// Output shape.
    pub out: Shape,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Parameters (weights + biases).
    pub params: u64,
    /// Receptive field side in input pixels.
    pub rf: usize,
    /// Stored weight bytes.
    pub weight_bytes: Bytes,
}

/// A folded model's size and cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Input shape.
    pub input: Shape,
    /// Per op.
    pub layers: Vec<LayerReport>,
    /// Total multiply-accumulates.
    pub macs: u64,
    /// Total parameters.
    pub params: u64,
    /// Total weight bytes.
    pub weight_bytes: Bytes,
    /// Peak activation RAM of the memory plan (the generated code's arena).
    pub activation_peak: Bytes,
    /// The same without convolution + pooling fusion (every pre-pooling map stored whole).
    pub activation_peak_unfused: Bytes,
    /// The arena of the plan whose first convolution streams its input (`ARENA_STREAMED`,
    /// what `infer` uses on Cortex-M and aarch64), when the model has one.
    pub activation_peak_streamed: Option<Bytes>,
    /// The raw u16 input cube.
    pub raw_input_bytes: u64,
}

fn describe(op: &Op) -> String {
    let act = |s: f32| {
        if s == 1.0 {
            String::new()
        } else if s == 0.0 {
            " + relu".into()
        } else {
            format!(" + leaky {s}")
        }
    };
    match op {
        Op::Conv2d(c) => {
            let g = c.geom;
            format!(
                "conv {}x{} {} s{} d{} {:?}{}",
                g.kernel,
                g.kernel,
                g.filters,
                g.stride,
                g.dilation,
                g.padding,
                act(c.slope)
            )
            .to_lowercase()
        }
        Op::Pool2d { kind, size } => format!("{kind:?} pool {size}").to_lowercase(),
        Op::GlobalAvgPool => "global avg pool".into(),
        Op::FlattenConcatZ => "flatten + z".into(),
        Op::Dense(d) => format!("dense {}{}", d.units, act(d.slope)),
        Op::LeakyRelu { slope } => format!("leaky relu {slope}"),
    }
}

fn weight_bytes(op: &Op, is_head: bool) -> Bytes {
    let (w, ch) = match op {
        Op::Conv2d(c) => (c.weight.len() as u64, c.geom.filters as u64),
        Op::Dense(d) => (d.weight.len() as u64, d.units as u64),
        Op::LeakyRelu { .. } => {
            return Bytes {
                f32: 0,
                f16: 0,
                int8: 16,
            };
        }
        _ => return Bytes::default(),
    };
    // Both requantisation tables are stored even without an activation (then equal).
    let per_channel = if is_head { 4 + 4 } else { 4 + 8 * 2 };
    Bytes {
        f32: 4 * (w + ch),
        f16: 2 * w + 4 * ch,
        int8: w + per_channel * ch,
    }
}

/// Build the report.
pub fn report(model: &FoldedModel) -> Result<Report> {
    let stats = analyze(model.input, &model.layers())?;
    let n = model.ops.len();
    let layers: Vec<LayerReport> = model
        .ops
        .iter()
        .zip(&stats)
        .enumerate()
        .map(|(i, (op, s))| LayerReport {
            index: i,
            op: describe(op),
            out: s.out,
            macs: s.macs,
            params: s.params,
            rf: s.rf,
            weight_bytes: weight_bytes(op, i + 1 == n),
        })
        .collect();
    let bytes = |arena: usize| Bytes {
        f32: 4 * arena as u64,
        f16: 4 * arena as u64,
        int8: arena as u64,
    };
    let steps = crate::plan::steps(model)?;
    let peak = bytes(crate::plan::arena_len(&steps));
    let streamed = crate::plan::stream(model, &steps)?
        .map(|st| bytes(crate::plan::arena_len_streamed(&steps, &st)));
    let unfused = bytes(crate::plan::arena_len(&crate::plan::steps_with(
        model, false,
    )?));
    Ok(Report {
        input: model.input,
        macs: layers.iter().map(|l| l.macs).sum(),
        params: layers.iter().map(|l| l.params).sum(),
        weight_bytes: layers
            .iter()
            .fold(Bytes::default(), |a, l| a + l.weight_bytes),
        activation_peak: peak,
        activation_peak_unfused: unfused,
        activation_peak_streamed: streamed,
        raw_input_bytes: 2 * model.input.len() as u64,
        layers,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header([
            "#",
            "op",
            "output c x h x w",
            "MACs",
            "params",
            "RF px",
            "f32 B",
            "f16 B",
            "int8 B",
        ]);
        for l in &self.layers {
            t.add_row([
                l.index.to_string(),
                l.op.clone(),
                format!("{} x {} x {}", l.out.c, l.out.h, l.out.w),
                l.macs.to_string(),
                l.params.to_string(),
                l.rf.to_string(),
                l.weight_bytes.f32.to_string(),
                l.weight_bytes.f16.to_string(),
                l.weight_bytes.int8.to_string(),
            ]);
        }
        writeln!(f, "{t}")?;
        let (w, a) = (self.weight_bytes, self.activation_peak);
        writeln!(f, "total: {} MACs, {} parameters", self.macs, self.params)?;
        writeln!(
            f,
            "weights: f32 {} B, f16 {} B, int8 {} B",
            w.f32, w.f16, w.int8
        )?;
        let u = &self.activation_peak_unfused;
        write!(
            f,
            "activation arena (memory plan, conv + pool fused over line buffers): f32 {} B, f16 {} B, int8 {} B (without fusion: f32 {} B, int8 {} B); raw u16 input {} B (caller's)",
            a.f32, a.f16, a.int8, u.f32, u.int8, self.raw_input_bytes
        )?;
        if let Some(st) = &self.activation_peak_streamed {
            write!(
                f,
                "\nwith the first convolution streaming its input (Cortex-M, aarch64): f32 {} B, f16 {} B, int8 {} B",
                st.f32, st.f16, st.int8
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::testutil::e30_dir;

    /// The edge preset on 10 x 50 x 50, worked out by hand:
    /// avg2 -> 10x25x25; conv 16 -> 16x25x25 (10,000 x 90 MACs); avg2 -> 16x12x12;
    /// conv 32 -> 32x12x12 (4,608 x 144); avg2 -> 32x6x6; conv 32 -> 32x6x6 (1,152 x 288);
    /// avg2 -> 32x3x3; + z -> 289; dense 32 (289 x 32); head (32 x 2).
    #[test]
    fn e30_report_matches_hand_arithmetic() {
        let m = Model::load(e30_dir()).unwrap();
        let r = report(&m.fold_batch_norm().unwrap()).unwrap();
        assert_eq!(r.macs, 900_000 + 663_552 + 331_776 + 9_248 + 64);
        // Parameters = every value stored in model.safetensors (no BatchNorm in this run).
        let stored: usize = m.tensors.values().map(|t| t.data.len()).sum();
        assert_eq!(r.params, stored as u64);
        let (weights, biases) = (1_440 + 4_608 + 9_216 + 9_248 + 64, 16 + 32 + 32 + 32 + 2);
        assert_eq!(r.weight_bytes.f32, 4 * (weights + biases));
        assert_eq!(r.weight_bytes.f16, 2 * weights + 4 * biases);
        // Leaky ReLU everywhere but the head: bias + two requant tables per channel.
        assert_eq!(
            r.weight_bytes.int8,
            weights + (16 + 32 + 32 + 32) * (4 + 16) + 2 * (4 + 4)
        );
        // Largest step of the plan without conv + pool fusion: the fused first pool's output
        // (6,250 values) read by the first convolution writing 16 x 25 x 25 = 10,000. With it,
        // that convolution writes its pooled 16 x 12 x 12 = 2,304 through a line buffer of two
        // output rows, 2 x 16 x 25 = 800.
        assert_eq!(
            r.activation_peak_unfused,
            Bytes {
                f32: 65_000,
                f16: 65_000,
                int8: 16_250
            }
        );
        assert_eq!(
            r.activation_peak,
            Bytes {
                f32: 4 * 9_354,
                f16: 4 * 9_354,
                int8: 9_354
            }
        );
        // Streamed: conv1 reads a 4-row window (1,000 values) instead of the stored 6,250, and
        // conv3's step (2,304 + 768 + 1,152) is the peak.
        assert_eq!(
            r.activation_peak_streamed,
            Some(Bytes {
                f32: 4 * 4_224,
                f16: 4 * 4_224,
                int8: 4_224
            })
        );
        assert_eq!(r.raw_input_bytes, 50_000);
        // Receptive field after the last pool: 2, 6, 8, 16, 20, 36, 44.
        assert_eq!(
            r.layers.iter().map(|l| l.rf).take(7).collect::<Vec<_>>(),
            [2, 6, 8, 16, 20, 36, 44]
        );
        assert_eq!(r.layers[7].out, Shape { c: 289, h: 1, w: 1 });
        let text = r.to_string();
        assert!(
            text.contains("conv 3x3 16 s1 d1 same + leaky 0.1"),
            "{text}"
        );
    }
}
