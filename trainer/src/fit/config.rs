//! What a training run is: the architecture (built from convolution blocks into
//! the framework-neutral layer list codegen reads), the optimisation, and the
//! data handling. Stored as `config.toml` in every run directory.

use anyhow::{Result, bail};
use arch::model::AuxQuantity;
use arch::{Layer, Padding, PoolKind};
use serde::{Deserialize, Serialize};

/// A convolution block: `convs` convolutions (each optionally batch-normalised and
/// followed by the activation), then an optional pooling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvBlock {
    /// Convolutions in the block.
    pub convs: usize,
    /// Filters of each convolution.
    pub filters: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Dilation.
    pub dilation: usize,
    /// Pooling after the block: "max", "avg" or "none".
    pub pool: String,
    /// Pooling window (= stride).
    pub pool_size: usize,
}

impl Default for ConvBlock {
    fn default() -> Self {
        Self {
            convs: 1,
            filters: 16,
            kernel: 3,
            stride: 1,
            dilation: 1,
            pool: "avg".into(),
            pool_size: 2,
        }
    }
}

/// The network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Average-pooling window applied to the input before the first convolution (1 = none).
    pub input_pool: usize,
    /// Convolution blocks.
    pub blocks: Vec<ConvBlock>,
    /// Padding of every convolution: "same" or "valid".
    pub padding: String,
    /// Batch normalisation after every convolution.
    pub batch_norm: bool,
    /// Hidden dense layers after the flattened features and the redshift.
    pub dense: Vec<usize>,
    /// Dropout rate after every hidden dense layer (the lab's best placement).
    pub dropout: f64,
    /// Leaky-ReLU slope (0 = ReLU; Keras' LeakyReLU default is 0.3).
    pub leaky_slope: f64,
    /// Auxiliary scalar inputs joined to the redshift before the dense head, in order
    /// (`["exposure_s"]`: the exposure at the cluster, which the network sees as a
    /// normalised `log10 t`); none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aux_inputs: Vec<AuxQuantity>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Preset::Edge.config().model
    }
}

/// Loss function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Gaussian negative log-likelihood of (mean, sigma): the lab's "log loss".
    Nll,
    /// Mean squared error of the mean (sigma is then fitted afterwards on validation residuals).
    Mse,
}

/// Optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam.
    Adam,
    /// Stochastic gradient descent with momentum.
    Sgd,
}

/// Learning-rate schedule over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Multiplied by `lr_decay` every epoch.
    Exponential,
    /// Cosine from `lr` to `lr_min` over the epochs.
    Cosine,
}

/// CPU backend of burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// burn's flex CPU backend (default; about 16x faster to train here than ndarray).
    #[default]
    Flex,
    /// burn-ndarray (deprecated upstream; kept as the owner asked and as a second reference).
    Ndarray,
}

/// Optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Loss.
    pub loss: Loss,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule.
    pub schedule: Schedule,
    /// Per-epoch factor of the exponential schedule.
    pub lr_decay: f64,
    /// Final learning rate of the cosine schedule.
    pub lr_min: f64,
    /// Linear warm-up epochs.
    pub warmup_epochs: usize,
    /// SGD momentum.
    pub momentum: f64,
    /// Batch size.
    pub batch_size: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation loss (0 = never).
    pub patience: usize,
    /// L1 penalty on weights (not biases), added to the loss as l1 * sum |w|.
    pub l1: f64,
    /// L2 penalty on weights (not biases), added to the loss as l2 * sum w^2 (Keras' kernel_regularizer).
    pub l2: f64,
    /// Augment by the 8 flips and 90-degree rotations.
    pub augment: bool,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Seed of the train/validation/test split (shared with `trainer baseline`).
    pub split_seed: u64,
    /// Backend.
    pub backend: Backend,
    /// Cap on training clusters per epoch (0 = all); for quick runs and tests.
    pub max_train: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Preset::Edge.config().train
    }
}

/// A run's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Preset it started from (informational).
    pub preset: String,
    /// Network.
    pub model: ModelConfig,
    /// Optimisation.
    pub train: TrainConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        Preset::Edge.config()
    }
}

/// Named starting points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Preset {
    /// Designed for a microcontroller: about 2 M multiply-accumulates, about 25 k parameters.
    #[default]
    Edge,
    /// A faithful reproduction of the lab report's Keras network and hyperparameters.
    SeedLab,
}

impl Preset {
    /// The preset's configuration.
    pub fn config(self) -> RunConfig {
        match self {
            Preset::Edge => RunConfig {
                preset: "edge".into(),
                model: ModelConfig {
                    input_pool: 2,
                    blocks: vec![
                        ConvBlock {
                            filters: 16,
                            ..ConvBlock::default()
                        },
                        ConvBlock {
                            filters: 32,
                            ..ConvBlock::default()
                        },
                        ConvBlock {
                            filters: 32,
                            ..ConvBlock::default()
                        },
                    ],
                    padding: "same".into(),
                    batch_norm: false,
                    dense: vec![32],
                    dropout: 0.0,
                    leaky_slope: 0.1,
                    aux_inputs: vec![],
                },
                train: TrainConfig {
                    loss: Loss::Nll,
                    optimizer: Optimizer::Adam,
                    lr: 2e-3,
                    schedule: Schedule::Cosine,
                    lr_decay: 0.95,
                    lr_min: 2e-5,
                    warmup_epochs: 1,
                    momentum: 0.9,
                    batch_size: 64,
                    epochs: 30,
                    patience: 0,
                    l1: 0.0,
                    l2: 0.0,
                    augment: true,
                    seed: 0,
                    split_seed: 0,
                    backend: Backend::Flex,
                    max_train: 0,
                },
            },
            // Lab report section 6.1: 3 conv (k2, 20 filters), max-pool 4, 2 conv, max-pool 4,
            // dense 512-256-128-64, LeakyReLU everywhere (Keras default alpha 0.3), dropout 0.2
            // after each dense layer (section 7), L2 1e-4 on kernels (section 8), Adam 1e-3,
            // batch 64, Keras "valid" padding. The lab's best runs used the Gaussian log loss.
            Preset::SeedLab => RunConfig {
                preset: "seed-lab".into(),
                model: ModelConfig {
                    input_pool: 1,
                    blocks: vec![
                        ConvBlock {
                            convs: 3,
                            filters: 20,
                            kernel: 2,
                            pool: "max".into(),
                            pool_size: 4,
                            ..ConvBlock::default()
                        },
                        ConvBlock {
                            convs: 2,
                            filters: 20,
                            kernel: 2,
                            pool: "max".into(),
                            pool_size: 4,
                            ..ConvBlock::default()
                        },
                    ],
                    padding: "valid".into(),
                    batch_norm: false,
                    dense: vec![512, 256, 128, 64],
                    dropout: 0.2,
                    leaky_slope: 0.3,
                    aux_inputs: vec![],
                },
                train: TrainConfig {
                    loss: Loss::Nll,
                    optimizer: Optimizer::Adam,
                    lr: 1e-3,
                    schedule: Schedule::Constant,
                    lr_decay: 0.95,
                    lr_min: 1e-5,
                    warmup_epochs: 0,
                    momentum: 0.9,
                    batch_size: 64,
                    epochs: 12,
                    patience: 0,
                    l1: 0.0,
                    l2: 1e-4,
                    augment: true,
                    seed: 0,
                    split_seed: 0,
                    backend: Backend::Flex,
                    max_train: 0,
                },
            },
        }
    }
}

/// Number of outputs of the head: mean log mass and the raw sigma parameter.
pub const HEAD_OUTPUTS: usize = 2;

impl ModelConfig {
    /// The framework-neutral layer list (what codegen reads), checked for consistency.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        let padding = match self.padding.as_str() {
            "same" => Padding::Same,
            "valid" => Padding::Valid,
            p => bail!("model.padding = {p:?}: expected \"same\" or \"valid\""),
        };
        if !(0.0..1.0).contains(&self.dropout) {
            bail!(
                "model.dropout = {}: expected 0 <= dropout < 1",
                self.dropout
            );
        }
        if !(self.leaky_slope >= 0.0 && self.leaky_slope < 1.0) {
            bail!(
                "model.leaky_slope = {}: expected 0 <= slope < 1",
                self.leaky_slope
            );
        }
        let mut l = Vec::new();
        if self.input_pool > 1 {
            l.push(Layer::Pool2d {
                kind: PoolKind::Avg,
                size: self.input_pool,
            });
        }
        for (i, b) in self.blocks.iter().enumerate() {
            if b.convs == 0 || b.filters == 0 || b.kernel == 0 || b.stride == 0 || b.dilation == 0 {
                bail!(
                    "model.blocks[{i}]: convs, filters, kernel, stride and dilation must be at least 1"
                );
            }
            for _ in 0..b.convs {
                l.push(Layer::Conv2d {
                    filters: b.filters,
                    kernel: b.kernel,
                    stride: b.stride,
                    dilation: b.dilation,
                    padding,
                });
                if self.batch_norm {
                    l.push(Layer::BatchNorm { epsilon: 1e-5 });
                }
                l.push(Layer::LeakyRelu {
                    slope: self.leaky_slope,
                });
            }
            match b.pool.as_str() {
                "none" => {}
                "max" | "avg" if b.pool_size > 1 => {
                    let kind = if b.pool == "max" {
                        PoolKind::Max
                    } else {
                        PoolKind::Avg
                    };
                    l.push(Layer::Pool2d {
                        kind,
                        size: b.pool_size,
                    });
                }
                "max" | "avg" => {}
                p => bail!("model.blocks[{i}].pool = {p:?}: expected \"max\", \"avg\" or \"none\""),
            }
        }
        let scalars = 1 + self.aux_inputs.len();
        if scalars > arch::MAX_SCALARS {
            bail!(
                "model.aux_inputs: {} inputs, at most {} besides the redshift",
                self.aux_inputs.len(),
                arch::MAX_SCALARS - 1
            );
        }
        for (i, q) in self.aux_inputs.iter().enumerate() {
            if self.aux_inputs[..i].contains(q) {
                bail!("model.aux_inputs: {} is listed twice", q.runtime().name());
            }
        }
        l.push(Layer::FlattenConcatZ { scalars });
        for &units in &self.dense {
            if units == 0 {
                bail!("model.dense: layer sizes must be at least 1");
            }
            l.push(Layer::Dense { units });
            l.push(Layer::LeakyRelu {
                slope: self.leaky_slope,
            });
            if self.dropout > 0.0 {
                l.push(Layer::Dropout { rate: self.dropout });
            }
        }
        l.push(Layer::Dense {
            units: HEAD_OUTPUTS,
        });
        Ok(l)
    }
}

impl TrainConfig {
    /// Reject values that cannot train.
    pub fn check(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("train.lr = {}: must be positive", self.lr);
        }
        if self.batch_size == 0 || self.epochs == 0 {
            bail!("train.batch_size and train.epochs must be at least 1");
        }
        if !(self.l1 >= 0.0 && self.l2 >= 0.0) {
            bail!("train.l1 and train.l2 must be non-negative");
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            bail!(
                "train.lr_decay = {}: expected 0 < decay <= 1",
                self.lr_decay
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!(
                "train.momentum = {}: expected 0 <= momentum < 1",
                self.momentum
            );
        }
        if !(self.l1.is_finite() && self.l2.is_finite()) {
            bail!("train.l1 and train.l2 must be finite");
        }
        // A negative floor would train with negative learning rates at the end of the
        // cosine; one above the peak would make the schedule rise.
        if !(self.lr_min >= 0.0 && self.lr_min <= self.lr) {
            bail!(
                "train.lr_min = {}: expected 0 <= lr_min <= lr ({})",
                self.lr_min,
                self.lr
            );
        }
        if self.warmup_epochs > self.epochs {
            bail!(
                "train.warmup_epochs = {}: at most train.epochs ({})",
                self.warmup_epochs,
                self.epochs
            );
        }
        Ok(())
    }

    /// Learning rate of `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let base = match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Exponential => self.lr * self.lr_decay.powi(epoch as i32),
            Schedule::Cosine => {
                let t = epoch as f64 / (self.epochs.max(2) - 1) as f64;
                self.lr_min
                    + 0.5 * (self.lr - self.lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        if epoch < self.warmup_epochs {
            base * (epoch + 1) as f64 / (self.warmup_epochs + 1) as f64
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that would train with negative or rising learning rates, or overflow the
    /// warm-up arithmetic, are refused naming the setting (issue 18, item 7).
    #[test]
    fn schedules_that_cannot_train_are_refused() {
        let ok = Preset::Edge.config().train;
        ok.check().unwrap();
        type Edit = fn(&mut TrainConfig);
        let cases: [(&str, Edit); 5] = [
            ("lr_min", |t| t.lr_min = -1e-4),
            ("lr_min", |t| t.lr_min = t.lr * 2.0),
            ("lr_min", |t| t.lr_min = f64::NAN),
            ("warmup_epochs", |t| t.warmup_epochs = usize::MAX),
            ("l1", |t| t.l1 = f64::INFINITY),
        ];
        for (name, edit) in cases {
            let mut t = ok.clone();
            edit(&mut t);
            let e = t.check().expect_err(name).to_string();
            assert!(e.contains(name), "{name}: {e}");
        }
        // Every learning rate of a valid cosine schedule lies in [lr_min, lr].
        for e in 0..ok.epochs {
            let lr = ok.lr_at(e);
            assert!(lr > 0.0 && lr <= ok.lr, "epoch {e}: {lr}");
        }
    }
}
