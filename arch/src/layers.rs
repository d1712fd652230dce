//! One description of a network, shared by trained runs and (later) ONNX
//! imports, plus the per-layer arithmetic of shapes, cost and receptive field.
//!
//! Receptive-field arithmetic follows the lecture notes (`shared/seeds/001_*`):
//! for a layer with kernel `k`, dilation `d` (effective kernel `k' = d(k-1)+1`),
//! stride `s` and padding `p`:
//! `n_out = floor((n_in + 2p - k') / s) + 1`, `j_out = j_in * s`,
//! `r_out = r_in + (k' - 1) * j_in`, `start_out = start_in + ((k'-1)/2 - p) * j_in`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Spatial padding of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding: the output shrinks by the effective kernel size minus one.
    Valid,
    /// Zero padding so that stride-1 output has the input's size (Keras "same").
    Same,
}

/// Pooling reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// Maximum over the window.
    Max,
    /// Mean over the window.
    Avg,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Most scalar inputs a network may take (redshift and auxiliary inputs).
pub const MAX_SCALARS: usize = 8;

/// One layer of the network's convolutional trunk or dense head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    /// 2-D convolution.
    Conv2d {
        /// Output channels.
        filters: usize,
        /// Square kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Dilation.
        dilation: usize,
        /// Padding mode.
        padding: Padding,
    },
    /// 2-D pooling with a square window equal to its stride.
    Pool2d {
        /// Max or average.
        kind: PoolKind,
        /// Window side and stride.
        size: usize,
    },
    /// Global average pooling to one value per channel.
    GlobalAvgPool,
    /// Flatten, then append the preprocessed scalar inputs (the lab's concatenation of the
    /// redshift, generalised): the redshift first, then the model's auxiliary inputs
    /// (`PreprocessDesc::extra`, e.g. log exposure).
    FlattenConcatZ {
        /// Number of scalars appended (1: the redshift only; omitted from JSON then, so
        /// descriptions written before auxiliary inputs read and hash unchanged).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        scalars: usize,
    },
    /// Fully connected layer.
    Dense {
        /// Output units.
        units: usize,
    },
    /// Batch normalisation over channels (folded into the preceding convolution at export).
    BatchNorm {
        /// Variance epsilon.
        epsilon: f64,
    },
    /// max(x, slope x); slope 0 is ReLU.
    LeakyRelu {
        /// Negative-side slope.
        slope: f64,
    },
    /// Dropout during training; identity at inference.
    Dropout {
        /// Fraction of units dropped while training.
        rate: f64,
    },
}

/// Shape of an activation tensor: channels x height x width (a vector has h = w = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Channels (or vector length).
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one layer costs and sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Output shape.
    pub out: Shape,
    /// Multiply-accumulates for one inference.
    pub macs: u64,
    /// Trainable parameters (weights + biases).
    pub params: u64,
    /// Receptive field side in input pixels.
    pub rf: usize,
    /// Distance in input pixels between adjacent output features.
    pub jump: usize,
}

/// Why an architecture cannot be built on a given input.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArchError {
    /// A window does not fit in its input.
    #[error("layer {index} ({what}): window {window} does not fit an input of {input} pixels")]
    WindowTooLarge {
        /// Layer index.
        index: usize,
        /// Layer description.
        what: String,
        /// Effective window size.
        window: usize,
        /// Input side.
        input: usize,
    },
    /// A size parameter is zero.
    #[error("layer {index} ({what}): sizes, strides and dilations must be at least 1")]
    ZeroSize {
        /// Layer index.
        index: usize,
        /// Layer description.
        what: String,
    },
    /// "Same" padding with an even kernel (it would pad one side more than the other,
    /// which neither the trainer nor the runtime does).
    #[error(
        "layer {index} ({what}): \"same\" padding needs an odd kernel (an even one pads unevenly); use \"valid\""
    )]
    EvenSame {
        /// Layer index.
        index: usize,
        /// Layer description.
        what: String,
    },
    /// A size beyond what any model of this project can use (and what memory holds).
    #[error("layer {index} ({what}): {why}")]
    TooLarge {
        /// Layer index.
        index: usize,
        /// Layer description.
        what: String,
        /// Which limit, and its value.
        why: String,
    },
    /// A spatial layer came after the image was flattened.
    #[error("layer {index} ({what}): spatial layer after the image was flattened")]
    SpatialAfterFlatten {
        /// Layer index.
        index: usize,
        /// Layer description.
        what: String,
    },
}

/// The largest kernel side, stride, dilation or pooling window accepted (the ONNX importer's limit too).
pub const MAX_WINDOW: usize = 64;
/// The most filters of a convolution or units of a dense layer.
pub const MAX_CHANNELS: usize = 4096;
/// The most values one layer's output may hold for one image.
pub const MAX_ACTIVATION: usize = 1 << 24;
/// The most trainable parameters a network may have (400 MB of f32).
pub const MAX_PARAMS: u64 = 100_000_000;

/// Walk the layers from an input image shape, returning per-layer statistics.
/// Sizes are validated before any arithmetic on them (nothing overflows, nothing
/// this returns `Ok` for asks for more than [`MAX_PARAMS`] weights or
/// [`MAX_ACTIVATION`] values per layer).
pub fn analyze(input: Shape, layers: &[Layer]) -> Result<Vec<LayerStats>, ArchError> {
    let mut shape = input;
    let (mut rf, mut jump) = (1usize, 1usize);
    let mut flat = false;
    let mut out = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let what = || format!("{layer:?}");
        let spatial = |window: usize, stride: usize, pad: usize, n: usize| {
            if n + 2 * pad < window {
                Err(ArchError::WindowTooLarge {
                    index,
                    what: what(),
                    window,
                    input: n,
                })
            } else {
                Ok((n + 2 * pad - window) / stride + 1)
            }
        };
        let stats = match *layer {
            Layer::Conv2d {
                filters,
                kernel,
                stride,
                dilation,
                padding,
            } => {
                if flat {
                    return Err(ArchError::SpatialAfterFlatten {
                        index,
                        what: what(),
                    });
                }
                if filters == 0 || kernel == 0 || stride == 0 || dilation == 0 {
                    return Err(ArchError::ZeroSize {
                        index,
                        what: what(),
                    });
                }
                let too_large = |why: String| ArchError::TooLarge {
                    index,
                    what: what(),
                    why,
                };
                if kernel.max(stride).max(dilation) > MAX_WINDOW {
                    return Err(too_large(format!(
                        "kernel, stride and dilation must each be at most {MAX_WINDOW}"
                    )));
                }
                if filters > MAX_CHANNELS {
                    return Err(too_large(format!(
                        "{filters} filters (at most {MAX_CHANNELS})"
                    )));
                }
                if padding == Padding::Same && kernel % 2 == 0 {
                    return Err(ArchError::EvenSame {
                        index,
                        what: what(),
                    });
                }
                let k_eff = dilation * (kernel - 1) + 1;
                let (h, w) = match padding {
                    Padding::Valid => (
                        spatial(k_eff, stride, 0, shape.h)?,
                        spatial(k_eff, stride, 0, shape.w)?,
                    ),
                    // Keras "same": output = ceil(n / stride), padding split as needed.
                    Padding::Same => (shape.h.div_ceil(stride), shape.w.div_ceil(stride)),
                };
                let o = Shape { c: filters, h, w };
                let per_out = (kernel * kernel * shape.c) as u64;
                rf += (k_eff - 1) * jump;
                jump *= stride;
                LayerStats {
                    out: o,
                    macs: o.len() as u64 * per_out,
                    params: filters as u64 * (per_out + 1),
                    rf,
                    jump,
                }
            }
            Layer::Pool2d { size, .. } => {
                if flat {
                    return Err(ArchError::SpatialAfterFlatten {
                        index,
                        what: what(),
                    });
                }
                if size == 0 {
                    return Err(ArchError::ZeroSize {
                        index,
                        what: what(),
                    });
                }
                if size > MAX_WINDOW {
                    return Err(ArchError::TooLarge {
                        index,
                        what: what(),
                        why: format!("pooling window at most {MAX_WINDOW}"),
                    });
                }
                let o = Shape {
                    c: shape.c,
                    h: spatial(size, size, 0, shape.h)?,
                    w: spatial(size, size, 0, shape.w)?,
                };
                rf += (size - 1) * jump;
                jump *= size;
                LayerStats {
                    out: o,
                    macs: 0,
                    params: 0,
                    rf,
                    jump,
                }
            }
            Layer::GlobalAvgPool => {
                flat = true;
                rf += (shape.h.max(shape.w) - 1) * jump;
                LayerStats {
                    out: Shape {
                        c: shape.c,
                        h: 1,
                        w: 1,
                    },
                    macs: 0,
                    params: 0,
                    rf,
                    jump,
                }
            }
            Layer::FlattenConcatZ { scalars } => {
                if !(1..=MAX_SCALARS).contains(&scalars) {
                    return Err(ArchError::TooLarge {
                        index,
                        what: what(),
                        why: format!("1 to {MAX_SCALARS} scalar inputs"),
                    });
                }
                flat = true;
                LayerStats {
                    out: Shape {
                        c: shape.len() + scalars,
                        h: 1,
                        w: 1,
                    },
                    macs: 0,
                    params: 0,
                    rf,
                    jump,
                }
            }
            Layer::BatchNorm { .. } => LayerStats {
                out: shape,
                macs: 0,
                params: 4 * shape.c as u64,
                rf,
                jump,
            },
            Layer::LeakyRelu { .. } | Layer::Dropout { .. } => LayerStats {
                out: shape,
                macs: 0,
                params: 0,
                rf,
                jump,
            },
            Layer::Dense { units } => {
                if units == 0 {
                    return Err(ArchError::ZeroSize {
                        index,
                        what: what(),
                    });
                }
                if units > MAX_CHANNELS {
                    return Err(ArchError::TooLarge {
                        index,
                        what: what(),
                        why: format!("{units} units (at most {MAX_CHANNELS})"),
                    });
                }
                let n_in = shape.len() as u64;
                flat = true;
                LayerStats {
                    out: Shape {
                        c: units,
                        h: 1,
                        w: 1,
                    },
                    macs: n_in * units as u64,
                    params: (n_in + 1) * units as u64,
                    rf,
                    jump,
                }
            }
        };
        if stats.out.len() > MAX_ACTIVATION {
            return Err(ArchError::TooLarge {
                index,
                what: what(),
                why: format!(
                    "an output of {} values per image (at most {MAX_ACTIVATION})",
                    stats.out.len()
                ),
            });
        }
        shape = stats.out;
        out.push(stats);
        let params: u64 = out.iter().map(|s| s.params).sum();
        if params > MAX_PARAMS {
            return Err(ArchError::TooLarge {
                index,
                what: what(),
                why: format!("{params} parameters up to here (at most {MAX_PARAMS})"),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(filters: usize, kernel: usize, stride: usize, padding: Padding) -> Layer {
        Layer::Conv2d {
            filters,
            kernel,
            stride,
            dilation: 1,
            padding,
        }
    }

    /// The lecture notes' worked example: 3x3 conv, pad 1, stride 2 on 5x5 gives
    /// 3x3 with receptive field 3 and jump 2; a second one gives 2x2, field 7, jump 4.
    #[test]
    fn lecture_example_receptive_field() {
        let input = Shape { c: 1, h: 5, w: 5 };
        let layers = [conv(1, 3, 2, Padding::Same), conv(1, 3, 2, Padding::Same)];
        let s = analyze(input, &layers).unwrap();
        assert_eq!((s[0].out.h, s[0].rf, s[0].jump), (3, 3, 2));
        assert_eq!((s[1].out.h, s[1].rf, s[1].jump), (2, 7, 4));
    }

    /// MACs of a valid conv equal the brute-force count of the loops it implies.
    #[test]
    fn conv_macs_match_loop_count() {
        let input = Shape {
            c: 10,
            h: 50,
            w: 50,
        };
        let s = analyze(input, &[conv(16, 3, 1, Padding::Valid)]).unwrap();
        let mut count = 0u64;
        for _oc in 0..16 {
            for _y in 0..48 {
                for _x in 0..48 {
                    for _ic in 0..10 {
                        for _ky in 0..3 {
                            for _kx in 0..3 {
                                count += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(s[0].macs, count);
        assert_eq!(s[0].params, 16 * (10 * 9 + 1));
    }

    #[test]
    fn dilation_widens_the_field() {
        let input = Shape { c: 1, h: 20, w: 20 };
        let l = Layer::Conv2d {
            filters: 1,
            kernel: 3,
            stride: 1,
            dilation: 2,
            padding: Padding::Valid,
        };
        let s = analyze(input, &[l]).unwrap();
        assert_eq!((s[0].out.h, s[0].rf), (16, 5));
    }

    #[test]
    fn absurd_sizes_are_errors_not_allocations() {
        let input = Shape {
            c: 10,
            h: 50,
            w: 50,
        };
        let big = |filters, kernel, dilation| Layer::Conv2d {
            filters,
            kernel,
            stride: 1,
            dilation,
            padding: Padding::Valid,
        };
        for l in [
            big(1 << 40, 3, 1),
            big(16, usize::MAX, 1),
            big(16, 3, usize::MAX),
            Layer::Dense { units: usize::MAX },
        ] {
            let e = analyze(input, std::slice::from_ref(&l)).unwrap_err();
            assert!(
                matches!(e, ArchError::TooLarge { index: 0, .. }),
                "{l:?}: {e}"
            );
        }
        // 4096 filters of 3x3 twice: 4096 * 4096 * 9 = 151 M weights in layer 1.
        let e = analyze(input, &[big(4096, 3, 1), big(4096, 3, 1)]).unwrap_err();
        assert!(matches!(e, ArchError::TooLarge { index: 1, .. }), "{e}");
        let e = analyze(
            input,
            &[Layer::Conv2d {
                filters: 4,
                kernel: 4,
                stride: 1,
                dilation: 1,
                padding: Padding::Same,
            }],
        )
        .unwrap_err();
        assert!(matches!(e, ArchError::EvenSame { index: 0, .. }), "{e}");
    }

    #[test]
    fn oversized_window_is_an_error() {
        let input = Shape { c: 1, h: 4, w: 4 };
        let err = analyze(
            input,
            &[Layer::Pool2d {
                kind: PoolKind::Max,
                size: 5,
            }],
        )
        .unwrap_err();
        assert!(matches!(err, ArchError::WindowTooLarge { index: 0, .. }));
    }
}
