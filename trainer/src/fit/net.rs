//! The CNN in burn, interpreted from the framework-neutral layer list so that the
//! trained network and what codegen exports can never disagree about structure.

use arch::{Layer, Padding, PoolKind, Shape, analyze};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData, activation};

/// Input shape of every model: the dataset's count cube (`arch` owns it).
pub use arch::INPUT;

/// Smallest predicted sigma (dex): keeps the likelihood finite.
pub const SIGMA_FLOOR: f64 = 0.005;

/// The trainable layers, in order of appearance in the layer list.
#[derive(Module, Debug)]
pub struct Net {
    /// Convolutions.
    pub convs: Vec<Conv2d>,
    /// Batch norms (empty when the model has none).
    pub norms: Vec<BatchNorm>,
    /// Dense layers, the last being the (mean, sigma) head.
    pub dense: Vec<Linear>,
}

/// Host-generated dropout masks, one per dropout layer, already scaled by 1/(1-p).
pub type Masks = Vec<Tensor<2>>;

/// Build the network for `layers` on `device`, then draw every weight and bias from
/// ChaCha8(`seed`) on the host: uniform in +-1/sqrt(fan_in), burn's default Kaiming-uniform
/// bounds. burn's own initialisers draw from a process-global backend RNG, which concurrent
/// runs share; drawing here makes a seed mean the same network on every backend and thread.
pub fn init_seeded(
    layers: &[Layer],
    input: Shape,
    device: &Device,
    seed: u64,
) -> anyhow::Result<Net> {
    use rand::{Rng, SeedableRng};
    let mut net = init(layers, input, device)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x1417_1a11);
    let mut draw = |shape: Vec<usize>, fan_in: usize| {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        TensorData::new(v, shape)
    };
    for c in &mut net.convs {
        let dims = c.weight.val().dims();
        let fan_in = dims[1] * dims[2] * dims[3];
        c.weight = Param::from_tensor(Tensor::from_data(draw(dims.to_vec(), fan_in), device));
        if let Some(b) = &mut c.bias {
            *b = Param::from_tensor(Tensor::from_data(draw(vec![dims[0]], fan_in), device));
        }
    }
    for d in &mut net.dense {
        let dims = d.weight.val().dims();
        d.weight = Param::from_tensor(Tensor::from_data(draw(dims.to_vec(), dims[0]), device));
        if let Some(b) = &mut d.bias {
            *b = Param::from_tensor(Tensor::from_data(draw(vec![dims[1]], dims[0]), device));
        }
    }
    Ok(net)
}

/// Build the network for `layers` on `device` with burn's initialisers (weights to be
/// replaced by a record, or by [`init_seeded`]).
pub fn init(layers: &[Layer], input: Shape, device: &Device) -> anyhow::Result<Net> {
    let stats = analyze(input, layers)?;
    let (mut convs, mut norms, mut dense) = (Vec::new(), Vec::new(), Vec::new());
    let mut shape = input;
    for (layer, st) in layers.iter().zip(&stats) {
        match *layer {
            Layer::Conv2d {
                filters,
                kernel,
                stride,
                dilation,
                padding,
            } => {
                if padding == Padding::Same && (kernel % 2 == 0 || stride != 1) {
                    anyhow::bail!(
                        "\"same\" padding needs an odd kernel and stride 1 (got kernel {kernel}, stride {stride}); use \"valid\""
                    );
                }
                // burn's `Same` ignores dilation; pad as codegen and the runtime do,
                // `dilation (kernel - 1) / 2` on every side (`ConvGeom::pad`).
                let pad = if padding == Padding::Same {
                    let p = dilation * (kernel - 1) / 2;
                    PaddingConfig2d::Explicit(p, p, p, p)
                } else {
                    PaddingConfig2d::Valid
                };
                convs.push(
                    Conv2dConfig::new([shape.c, filters], [kernel, kernel])
                        .with_stride([stride, stride])
                        .with_dilation([dilation, dilation])
                        .with_padding(pad)
                        .init(device),
                );
            }
            Layer::BatchNorm { epsilon } => norms.push(
                BatchNormConfig::new(shape.c)
                    .with_epsilon(epsilon)
                    .init(device),
            ),
            Layer::Dense { units } => {
                dense.push(LinearConfig::new(shape.len(), units).init(device))
            }
            _ => {}
        }
        shape = st.out;
    }
    Ok(Net {
        convs,
        norms,
        dense,
    })
}

impl Net {
    /// Forward pass: images `[B, 10, 50, 50]` (preprocessed), redshift `[B, 1]`
    /// (preprocessed) to the raw head `[B, 2]`. `masks` holds one dropout mask per
    /// dropout layer when training; `None` at inference.
    pub fn forward(
        &self,
        layers: &[Layer],
        x: Tensor<4>,
        z: Tensor<2>,
        masks: Option<&Masks>,
    ) -> Tensor<2> {
        self.forward_traced(layers, x, z, masks, &mut |_| {})
    }

    /// The feature maps of every convolution block for images `x` (each `[B, C, H, W]`:
    /// a convolution's output after the batch norm and activation that follow it, before
    /// the next pooling or convolution).
    pub fn feature_maps(&self, layers: &[Layer], x: Tensor<4>, z: Tensor<2>) -> Vec<Tensor<4>> {
        let mut maps = Vec::new();
        self.forward_traced(layers, x, z, None, &mut |t| maps.push(t.clone()));
        maps
    }

    /// [`Net::forward`], handing each convolution block's feature map to `trace`.
    pub fn forward_traced(
        &self,
        layers: &[Layer],
        x: Tensor<4>,
        z: Tensor<2>,
        masks: Option<&Masks>,
        trace: &mut dyn FnMut(&Tensor<4>),
    ) -> Tensor<2> {
        let (mut ci, mut ni, mut di, mut mi) = (0, 0, 0, 0);
        let mut pending = false;
        let mut img = Some(x);
        let mut vec: Option<Tensor<2>> = None;
        let mut z = Some(z);
        for layer in layers {
            if pending
                && matches!(
                    layer,
                    Layer::Conv2d { .. }
                        | Layer::Pool2d { .. }
                        | Layer::GlobalAvgPool
                        | Layer::FlattenConcatZ { .. }
                )
                && let Some(t) = &img
            {
                trace(t);
                pending = false;
            }
            match *layer {
                Layer::Conv2d { .. } => {
                    img = img.map(|t| self.convs[ci].forward(t));
                    ci += 1;
                    pending = true;
                }
                Layer::BatchNorm { .. } => {
                    img = img.map(|t| self.norms[ni].forward(t));
                    ni += 1;
                }
                Layer::Pool2d { kind, size } => {
                    img = img.map(|t| match kind {
                        PoolKind::Max => max_pool2d(
                            t,
                            MaxPoolOptions::new([size, size]).with_stride([size, size]),
                        ),
                        PoolKind::Avg => avg_pool2d(
                            t,
                            AvgPoolOptions::new([size, size]).with_stride([size, size]),
                        ),
                    });
                }
                Layer::GlobalAvgPool => {
                    img = img.map(|t| {
                        let [_, _, h, w] = t.dims();
                        avg_pool2d(t, AvgPoolOptions::new([h, w]).with_stride([h, w]))
                    });
                }
                Layer::FlattenConcatZ { .. } => {
                    let t = img.take().expect("image before flatten");
                    let flat: Tensor<2> = t.flatten(1, 3);
                    vec = Some(Tensor::cat(
                        vec![flat, z.take().expect("redshift used once")],
                        1,
                    ));
                }
                Layer::Dense { .. } => {
                    vec = vec.map(|t| self.dense[di].forward(t));
                    di += 1;
                }
                Layer::LeakyRelu { slope } => {
                    // Applies to whichever tensor is live: the image before flattening, the vector after.
                    vec = vec.map(|t| leaky(t, slope));
                    img = img.map(|t| leaky(t, slope));
                }
                Layer::Dropout { .. } => {
                    if let Some(m) = masks {
                        vec = vec.map(|t| t * m[mi].clone());
                    }
                    mi += 1;
                }
            }
        }
        vec.expect("the layer list ends in dense layers")
    }

    /// Set the head's bias so the untrained network predicts the training mean with a
    /// sigma equal to the training spread (the lab's "state initializers"), and shrink
    /// its weights so the first steps start from there.
    pub fn init_head(mut self, mean: f64, spread: f64) -> Self {
        let head = self.dense.last_mut().expect("a head layer");
        let device = head.weight.val().device();
        let w = (head.weight.val() * 0.1).detach();
        head.weight = Param::from_tensor(w);
        let s = (spread - SIGMA_FLOOR).max(1e-3);
        let raw_sigma = s.exp_m1().ln(); // softplus^-1
        head.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![mean as f32, raw_sigma as f32], [2]),
            &device,
        )));
        self
    }

    /// Sum of |w| and of w^2 over convolution and dense weights (not biases).
    pub fn penalties(&self) -> (Tensor<1>, Tensor<1>) {
        let mut l1: Option<Tensor<1>> = None;
        let mut l2: Option<Tensor<1>> = None;
        let mut add = |w1: Tensor<1>, w2: Tensor<1>| {
            l1 = Some(match l1.take() {
                Some(a) => a + w1,
                None => w1,
            });
            l2 = Some(match l2.take() {
                Some(a) => a + w2,
                None => w2,
            });
        };
        for c in &self.convs {
            let w = c.weight.val();
            add(w.clone().abs().sum(), w.powi_scalar(2).sum());
        }
        for d in &self.dense {
            let w = d.weight.val();
            add(w.clone().abs().sum(), w.powi_scalar(2).sum());
        }
        (l1.expect("weights"), l2.expect("weights"))
    }
}

/// max(x, slope x); plain ReLU for slope 0.
fn leaky<const D: usize>(t: Tensor<D>, slope: f64) -> Tensor<D> {
    if slope == 0.0 {
        activation::relu(t)
    } else {
        activation::leaky_relu(t, slope)
    }
}

/// Split the raw head into (mean, sigma), each `[B]`.
pub fn mean_sigma(raw: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    let [b, _] = raw.dims();
    let mu = raw.clone().slice([0..b, 0..1]).reshape([b]);
    let s = raw.slice([0..b, 1..2]).reshape([b]);
    let sigma = activation::softplus(s, 1.0) + SIGMA_FLOOR;
    (mu, sigma)
}

/// Gaussian negative log-likelihood per cluster: ln sigma + (y - mu)^2 / (2 sigma^2) + ln(2 pi)/2.
pub fn nll(mu: Tensor<1>, sigma: Tensor<1>, y: Tensor<1>) -> Tensor<1> {
    let r = (y - mu) / sigma.clone();
    sigma.log() + r.powi_scalar(2) * 0.5 + 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// Squared error per cluster.
pub fn squared_error(mu: Tensor<1>, y: Tensor<1>) -> Tensor<1> {
    (y - mu).powi_scalar(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch::model::ConvGeom;

    /// A dilated "same" convolution keeps the map's size in burn as in codegen, and
    /// the two compute the same values (burn's own `Same` ignored dilation: the map
    /// shrank and the head's input size no longer matched, a panic inside burn).
    #[test]
    fn dilated_same_convolution_agrees_with_codegen() {
        let input = Shape { c: 2, h: 9, w: 9 };
        let layers = [
            Layer::Conv2d {
                filters: 3,
                kernel: 3,
                stride: 1,
                dilation: 2,
                padding: Padding::Same,
            },
            Layer::FlattenConcatZ { scalars: 1 },
            Layer::Dense { units: 2 },
        ];
        let dev = Device::flex();
        let net = init_seeded(&layers, input, &dev, 7).unwrap();
        let x: Vec<f32> = (0..input.len())
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 2, 9, 9]), &dev);
        let z = Tensor::<2>::from_data(TensorData::new(vec![0.3f32], [1, 1]), &dev);
        let head = net.forward(&layers, t.clone(), z, None);
        assert_eq!(head.dims(), [1, 2]);
        let got = net.convs[0]
            .forward(t)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let w = net.convs[0]
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = net.convs[0]
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let g = ConvGeom {
            in_c: 2,
            filters: 3,
            kernel: 3,
            stride: 1,
            dilation: 2,
            padding: Padding::Same,
        };
        let want = arch::interp::conv2d_f32(&x, input, &g, &w, &b, 1.0);
        assert_eq!(got.len(), 3 * 9 * 9);
        assert_eq!(want.len(), got.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn absurd_architectures_are_refused_before_building() {
        let input = Shape {
            c: 10,
            h: 50,
            w: 50,
        };
        let layers = [Layer::Conv2d {
            filters: 1 << 30,
            kernel: 3,
            stride: 1,
            dilation: 1,
            padding: Padding::Valid,
        }];
        let e = init(&layers, input, &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("filters (at most"), "{e}");
    }
}
