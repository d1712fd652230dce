//! Image layers of the ONNX walk: convolution, pooling, batch normalisation, activations,
//! transposes and inference no-ops, each checked against the runtime's kernels.

use super::attrs;
use super::graph::const_f32;
use super::map::{Ax, NCHW, Val, Walk, describe, spatial_val};
use crate::arch::{Layer, PoolKind, Shape};
use crate::model::ConvGeom;
use anyhow::{Result, anyhow, bail, ensure};
use onnx_ir::avg_pool2d::AveragePool2dNode;
use onnx_ir::batch_norm::{BatchNormConfig, BatchNormalizationNode};
use onnx_ir::conv2d::Conv2dNode;
use onnx_ir::dropout::DropoutNode;
use onnx_ir::max_pool2d::MaxPool2dNode;
use onnx_ir::transpose::TransposeNode;

impl Walk<'_> {
    pub(super) fn dropout(&mut self, i: usize, d: &DropoutNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        if let Some(tm) = d.inputs.get(2).filter(|a| !a.is_optional()) {
            let on = const_f32(tm).map(|(_, v)| v.iter().any(|x| *x != 0.0));
            ensure!(
                on == Some(false),
                "{}: training_mode is not a constant false; supported: Dropout in inference mode (a no-op)",
                at()
            );
        }
        let (_, v) = self.chain_input(i)?;
        self.set_out(i, v, true)
    }

    pub(super) fn conv(&mut self, i: usize, c: &Conv2dNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let s = self.spatial(i, &v, "Conv")?;
        let cfg = &c.config;
        let (k, st, d, padding) = attrs::conv(
            cfg.kernel_size,
            cfg.stride,
            cfg.dilation,
            cfg.groups,
            &cfg.auto_pad,
            &cfg.padding,
            s,
        )
        .map_err(|e| anyhow!("{}: {e}", at()))?;
        let (wshape, weight) = c.inputs.get(1).and_then(const_f32).ok_or_else(|| {
            anyhow!(
                "{}: the weights are computed at run time; supported: constant weights",
                at()
            )
        })?;
        ensure!(
            wshape.len() == 4 && wshape[1] == s.c && wshape[2] == k && wshape[3] == k,
            "{}: weight shape {wshape:?} does not fit {} input channels and a {k}x{k} kernel",
            at(),
            s.c
        );
        let filters = wshape[0];
        let ci = self.counts[0];
        self.push_tensor(format!("conv{ci}.weight"), wshape, weight);
        if let Some(b) = c.inputs.get(2).filter(|a| !a.is_optional()) {
            let (bshape, bias) = const_f32(b).ok_or_else(|| {
                anyhow!(
                    "{}: the bias is computed at run time; supported: constant biases",
                    at()
                )
            })?;
            ensure!(
                bshape.iter().product::<usize>() == filters,
                "{}: bias of shape {bshape:?} for {filters} filters",
                at()
            );
            self.push_tensor(format!("conv{ci}.bias"), vec![filters], bias);
        }
        self.counts[0] += 1;
        let geom = ConvGeom {
            in_c: s.c,
            filters,
            kernel: k,
            stride: st,
            dilation: d,
            padding,
        };
        ensure!(
            s.h + 2 * geom.pad() > d * (k - 1) && s.w + 2 * geom.pad() > d * (k - 1),
            "{}: a {k}x{k} kernel with dilation {d} does not fit the {}x{} input",
            at(),
            s.h,
            s.w
        );
        self.layers.push(Layer::Conv2d {
            filters,
            kernel: k,
            stride: st,
            dilation: d,
            padding,
        });
        let out = geom.out_shape(s);
        self.set_out(i, spatial_val(out), true)
    }

    pub(super) fn max_pool(&mut self, i: usize, n: &MaxPool2dNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let s = self.spatial(i, &v, "MaxPool")?;
        let cfg = &n.config;
        ensure!(
            n.outputs
                .iter()
                .skip(1)
                .all(|o| o.name.is_empty() || !p.used(&o.name)),
            "{}: the indices output is used; supported: MaxPool values only",
            at()
        );
        let k = attrs::pool(
            cfg.kernel_size,
            cfg.strides,
            cfg.dilation,
            cfg.ceil_mode,
            &cfg.auto_pad,
            &cfg.padding,
            s,
        )
        .map_err(|e| anyhow!("{}: {e}", at()))?;
        self.pool(i, s, PoolKind::Max, k)
    }

    pub(super) fn avg_pool(&mut self, i: usize, n: &AveragePool2dNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let s = self.spatial(i, &v, "AveragePool")?;
        let cfg = &n.config;
        let k = attrs::pool(
            cfg.kernel_size,
            cfg.strides,
            cfg.dilation,
            cfg.ceil_mode,
            &cfg.auto_pad,
            &cfg.padding,
            s,
        )
        .map_err(|e| anyhow!("{}: {e}", at()))?;
        // No padding (checked), so count_include_pad cannot change the result.
        self.pool(i, s, PoolKind::Avg, k)
    }

    pub(super) fn global_avg_pool(&mut self, i: usize) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let s = match v {
            Val::Spatial {
                s,
                axes,
                pooled: false,
            } if axes[0] == Ax::N && axes[1] == Ax::C => s,
            _ => {
                // Not an image with its channels on axis 1: spatial() says why.
                self.spatial(i, &v, "GlobalAveragePool")?;
                bail!(
                    "{}: input is not an image with its channels on axis 1",
                    at()
                )
            }
        };
        self.layers.push(Layer::GlobalAvgPool);
        let out = Val::Spatial {
            s: Shape { c: s.c, h: 1, w: 1 },
            axes: NCHW,
            pooled: true,
        };
        self.set_out(i, out, true)
    }

    pub(super) fn batch_norm(&mut self, i: usize, n: &BatchNormalizationNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let eps = match &n.config {
            BatchNormConfig::Static(c) => c.epsilon,
            BatchNormConfig::Runtime(_) => bail!(
                "{}: the statistics are computed at run time; supported: constant scale, bias, mean and variance",
                at()
            ),
        };
        ensure!(
            n.outputs
                .iter()
                .skip(1)
                .all(|o| o.name.is_empty() || !p.used(&o.name)),
            "{}: training outputs (running mean / variance) are used; supported: inference mode",
            at()
        );
        let channels = match (&v, self.layers.last()) {
            (Val::Spatial { s, axes, .. }, Some(Layer::Conv2d { .. })) if *axes == NCHW => s.c,
            (
                Val::Vector {
                    index,
                    pre_dense: false,
                    ..
                },
                Some(Layer::Dense { .. }),
            ) => index.len(),
            _ => bail!(
                "{}: BatchNormalization must directly follow a convolution (NCHW) or a dense layer, with no activation between, so that it can be folded into it; here it follows {}",
                at(),
                self.layers
                    .last()
                    .map_or("the input".to_string(), |l| format!("{l:?}"))
            ),
        };
        let ni = self.counts[1];
        for (k, name) in ["gamma", "beta", "running_mean", "running_var"]
            .iter()
            .enumerate()
        {
            let (shape, data) =
                n.inputs.get(k + 1).and_then(const_f32).ok_or_else(|| {
                    anyhow!("{}: input {} ({name}) is not a constant", at(), k + 1)
                })?;
            ensure!(
                data.len() == channels && shape.len() == 1,
                "{}: {name} has shape {shape:?}, expected [{channels}] (one value per channel)",
                at()
            );
            self.push_tensor(format!("bn{ni}.{name}"), vec![channels], data);
        }
        self.counts[1] += 1;
        self.layers.push(Layer::BatchNorm { epsilon: eps });
        self.set_out(i, v, true)
    }

    pub(super) fn transpose(&mut self, i: usize, n: &TransposeNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let perm: Vec<usize> = n
            .config
            .perm
            .iter()
            .map(|p| usize::try_from(*p).unwrap_or(usize::MAX))
            .collect();
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        let is_perm = sorted == (0..perm.len()).collect::<Vec<_>>();
        let out = match v {
            Val::Spatial { s, axes, pooled } if perm.len() == 4 && perm[0] == 0 && is_perm => {
                Val::Spatial {
                    s,
                    axes: [axes[perm[0]], axes[perm[1]], axes[perm[2]], axes[perm[3]]],
                    pooled,
                }
            }
            Val::Vector { .. } if perm == [0, 1] => v,
            _ => bail!(
                "{}: perm {perm:?} on {}; supported: permutations of the image axes that keep the batch first",
                at(),
                describe(&v)
            ),
        };
        self.set_out(i, out, true)
    }

    pub(super) fn pool(&mut self, i: usize, s: Shape, kind: PoolKind, k: usize) -> Result<()> {
        self.layers.push(Layer::Pool2d { kind, size: k });
        let out = Shape {
            c: s.c,
            h: s.h / k,
            w: s.w / k,
        };
        self.set_out(i, spatial_val(out), true)
    }

    pub(super) fn activation(&mut self, i: usize, slope: f64) -> Result<()> {
        let (_, v) = self.chain_input(i)?;
        ensure!(
            slope.is_finite(),
            "{}: slope {slope} is not finite",
            self.p.at(i)
        );
        match v {
            Val::Spatial { .. } | Val::Vector { .. } => {}
            _ => bail!(
                "{}: activation on {}; supported: activations of the image features and hidden dense layers (the head has none)",
                self.p.at(i),
                describe(&v)
            ),
        }
        self.layers.push(Layer::LeakyRelu { slope });
        self.set_out(i, v, true)
    }
}
