#!/usr/bin/env python3
"""Training throughput (images/s) of the trainer's `edge` and `seed-lab` networks in
TensorFlow/Keras on the CPU: the Keras counterpart of `trainer fit` (issue 17, item 4).

The networks are the trainer's presets layer for layer (trainer/src/fit/config.rs,
`ModelConfig::layers`): the same convolutions (kernel, filters, padding), poolings,
leaky-ReLU slopes, dense head with the redshift joined after flattening, dropout,
L2 penalty on every kernel, the Gaussian negative log-likelihood on (mean,
softplus(raw) + 0.005), Adam, batch 64. Keras lays images out channels-last
(50, 50, 10), as the lab's pipeline did; burn uses (10, 50, 50). The data are
random numbers of the right shapes (throughput does not depend on the values).

One warm-up epoch (graph tracing), then `--epochs` timed epochs of `--images`
images each through `model.fit`, as the lab trained.

    python scripts/keras_throughput.py --preset seed-lab
"""

import argparse
import os
import statistics
import sys
import time

# Before TensorFlow loads: quiet logs; oneDNN stays at TensorFlow's default (on).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIGMA_FLOOR = 0.005


def build(preset, keras):
    from keras import layers, regularizers

    img = keras.Input((50, 50, 10), name="image")
    z = keras.Input((1,), name="redshift")
    if preset == "edge":
        # input avg-pool 2; 3 blocks of conv k3 "same" + LeakyReLU(0.1) + avg-pool 2;
        # dense 32; head 2. Adam 2e-3, no L2, no dropout.
        slope, reg, lr = 0.1, None, 2e-3
        x = layers.AveragePooling2D(2)(img)
        for f in (16, 32, 32):
            x = layers.Conv2D(f, 3, padding="same")(x)
            x = layers.LeakyReLU(negative_slope=slope)(x)
            x = layers.AveragePooling2D(2)(x)
        dense, dropout = (32,), 0.0
    elif preset == "seed-lab":
        # 3 x conv k2 "valid" 20 filters + LeakyReLU(0.3), max-pool 4, 2 x the same,
        # max-pool 4; dense 512-256-128-64 each + LeakyReLU + dropout 0.2; head 2.
        # L2 1e-4 on every kernel (the head's too), Adam 1e-3.
        slope, reg, lr = 0.3, regularizers.L2(1e-4), 1e-3
        x = img
        for n in (3, 2):
            for _ in range(n):
                x = layers.Conv2D(20, 2, padding="valid", kernel_regularizer=reg)(x)
                x = layers.LeakyReLU(negative_slope=slope)(x)
            x = layers.MaxPooling2D(4)(x)
        dense, dropout = (512, 256, 128, 64), 0.2
    else:
        raise SystemExit(f"unknown preset {preset}")
    x = layers.Concatenate()([layers.Flatten()(x), z])
    for u in dense:
        x = layers.Dense(u, kernel_regularizer=reg)(x)
        x = layers.LeakyReLU(negative_slope=slope)(x)
        if dropout > 0:
            x = layers.Dropout(dropout)(x)
    out = layers.Dense(2, kernel_regularizer=reg)(x)
    return keras.Model([img, z], out), lr


def nll(y_true, y_pred):
    """Gaussian negative log-likelihood of (mean, softplus(raw) + floor), as the trainer."""
    import tensorflow as tf

    y = tf.reshape(y_true, [-1])
    mu = y_pred[:, 0]
    sigma = tf.math.softplus(y_pred[:, 1]) + SIGMA_FLOOR
    r = (y - mu) / sigma
    return tf.math.log(sigma) + 0.5 * r * r + 0.9189385332046727


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=["edge", "seed-lab"], default="seed-lab")
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads")
    ap.add_argument("--inter", type=int, default=1, help="inter-op threads")
    a = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.inter)
    import keras

    keras.utils.set_random_seed(0)
    model, lr = build(a.preset, keras)
    # Adam with burn's defaults (beta 0.9 / 0.999, epsilon 1e-5); jit_compile left to
    # Keras ("auto": no XLA on a CPU-only machine, as in the lab's Keras 2).
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, epsilon=1e-5), loss=nll)

    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 2.0, (a.images, 50, 50, 10)).astype(np.float32)
    z = rng.uniform(-1.5, 1.5, (a.images, 1)).astype(np.float32)
    y = rng.uniform(14.0, 15.0, (a.images, 1)).astype(np.float32)

    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(
        [x, z], y, batch_size=a.batch, epochs=1 + a.epochs, shuffle=True, verbose=0, callbacks=[Clock()]
    )
    rates = [a.images / t for t in times[1:]]
    print(
        f"keras {a.preset}: tensorflow {tf.__version__} keras {keras.__version__}, "
        f"{model.count_params()} parameters, intra {a.threads} inter {a.inter}, jit {model.jit_compile}, "
        f"warm-up {a.images / times[0]:.0f} images/s"
    )
    for i, r in enumerate(rates):
        print(f"epoch {i + 1}: {r:.1f} images/s")
    total = a.images * len(rates) / sum(times[1:])
    print(
        f"RESULT keras {a.preset} {total:.1f} images/s "
        f"(timed epochs min {min(rates):.1f} median {statistics.median(rates):.1f})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
