#!/usr/bin/env python3
"""Generate the ONNX import fixtures of `codegen/tests/onnx.rs`.

Run (about a minute on 2 cores; the Rust tests need no Python, the outputs are committed):

    python3 -m venv /tmp/onnx-venv
    /tmp/onnx-venv/bin/pip install -r scripts/onnx-fixtures/requirements.txt
    /tmp/onnx-venv/bin/python scripts/onnx-fixtures/make_fixtures.py

It writes into `codegen/tests/fixtures/onnx/`:

- `inputs.npz`: 4 deterministic clusters in the dataset layout (`images` u16 [4, 10, 50, 50] raw
  counts, `redshift` f32 [4], `exposure_s` f32 [4] for the networks of `make_aux_fixtures.py`);
  every fixture is run on them;
- per network `<name>.onnx`, its preprocessing sidecar `<name>.preprocess.json` (what
  `codegen export --onnx --preprocess` reads) and `<name>.json`: provenance (this script, tool
  versions, seed, date), the framework's own outputs on the preprocessed inputs, and onnxruntime's
  outputs (what the Rust tests compare against);
- `bad/*.onnx` + `bad/cases.json`: small graphs that codegen must refuse, with the words the error
  has to contain (node name, operator, what is supported).

Networks (all take the preprocessed image and redshift, as the trainer's networks do):

- `torch_cf_bn`: PyTorch, channels first; Conv+BatchNorm2d (exported with TrainingMode.PRESERVE so
  the BatchNormalization node stays; the model is in eval mode and the node has training_mode=0),
  ReLU, MaxPool, LeakyReLU, AveragePool with a dropped remainder (25 -> 12), Flatten, Concat of the
  redshift, Gemm, BatchNorm1d, head Gemm of 2 units (mu, raw sigma).
- `torch_gap_matmul_mass`: PyTorch; strided valid and dilated same convolutions, GlobalAveragePool,
  the redshift concatenated *first*, dense layers written as `x @ W + b` (MatMul+Add), one output
  (mass only).
- `torch_two_heads`: PyTorch; average pooling first, Conv 5x5, MaxPool 3 with a remainder, two
  outputs: a mass Gemm and a sigma Gemm followed by Softplus.
- `keras_cl`: Keras (tf.keras 2.15, tf2onnx), channels last: NHWC input and Transpose(0,3,1,2)
  before the first Conv, BatchNormalization (tf2onnx folds it into the Conv), Transpose back before
  the Flatten (flatten order H, W, C), MatMul+Add dense layers, Dropout, 2 outputs in one tensor.
- `keras_gap`: Keras, channels last, average pooling first, a dilated same and a strided valid
  convolution, GlobalAveragePooling2D (tf2onnx: GlobalAveragePool + Squeeze), the redshift
  concatenated first, a Dense with a fused ReLU; its sidecar uses one band scale for all bands and
  a sigma scale calibration.
- `keras_lab`: the lab report's network (shared/seeds/000_*): 3 x Conv2D 20 2x2 valid with
  LeakyReLU 0.3, MaxPool 4, 2 x Conv2D 20 2x2, MaxPool 4, Flatten, Concatenate redshift, Dense
  512-256-128-64 with LeakyReLU 0.3 and Dropout 0.2, Dense 1 (mass only), channels last.

- `helper_spellings`, `helper_no_redshift` (onnx.helper, reference outputs from onnxruntime):
  Gemm with alpha, beta and transB = 0, a separate bias Add, Reshape [0, -1], a [N] redshift
  unsqueezed, Identity, Dropout, SAME_LOWER padding, ceil_mode on a dividing window; and a
  network without a redshift input, with BatchNormalization after a Gemm, mass only.

Weights are random (seeded), biases and batch-norm statistics non-trivial so no exporter can
drop them as zero.
"""

import datetime
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 20240607
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "codegen", "tests", "fixtures", "onnx")
BANDS, SIDE, N_CLUSTERS = 10, 50, 4
OPSET = 17


def versions():
    import tensorflow as tf
    import tf2onnx
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
    }


def provenance(extra):
    p = {
        "generated_by": "scripts/onnx-fixtures/make_fixtures.py",
        "command": "python scripts/onnx-fixtures/make_fixtures.py (requirements.txt in the same folder)",
        "seed": SEED,
        "date": datetime.date.today().isoformat(),
        "versions": versions(),
        "note": "Do not edit: regenerate with the script.",
    }
    p.update(extra)
    return p


# ---------------------------------------------------------------------------------------------
# Inputs: raw counts like a faint or bright cluster on background, deterministic for SEED.


def make_inputs():
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    images = np.zeros((N_CLUSTERS, BANDS, SIDE, SIDE), dtype=np.uint16)
    for i in range(N_CLUSTERS):
        amp = 10 ** rng.uniform(-0.5, 1.8)
        rc = rng.uniform(2.0, 6.0)
        cy, cx = rng.uniform(22, 28, size=2)
        r2 = ((y - cy) ** 2 + (x - cx) ** 2) / rc**2
        shape = (1 + r2) ** -1.5
        spectrum = np.exp(-0.5 * ((np.arange(BANDS) - rng.uniform(2, 5)) / 2.0) ** 2)
        bg = rng.uniform(0.02, 0.1, size=BANDS)
        lam = amp * spectrum[:, None, None] * shape[None] + bg[:, None, None]
        images[i] = np.minimum(rng.poisson(lam), 65535).astype(np.uint16)
    redshift = rng.uniform(0.05, 1.3, size=N_CLUSTERS).astype(np.float32)
    return images, redshift


def make_exposures():
    """Exposures of the 4 clusters, seconds, log-uniform in [300, 30000] (own seed: the images and
    redshifts above are unchanged)."""
    rng = np.random.default_rng(SEED + 10)
    return (10 ** rng.uniform(np.log10(300.0), np.log10(30000.0), size=N_CLUSTERS)).astype(np.float32)


def preprocess(images, redshift, pre):
    """The runtime's preprocessing in f32: x = ln(1 + counts) * band_scale[band], z' = (z - shift) * scale."""
    scale = np.broadcast_to(np.asarray(pre["band_scale"], dtype=np.float32), (BANDS,))[None, :, None, None]
    x = np.log1p(images.astype(np.float64)).astype(np.float32) * scale
    z = (redshift - np.float32(pre.get("z_shift", 0.0))) * np.float32(pre.get("z_scale", 1.0))
    return x.astype(np.float32), z.astype(np.float32)[:, None]


def run_ort(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, feeds)
    return names, [np.asarray(o, dtype=np.float32) for o in outs]


def write_fixture(name, model_path, pre, feeds, framework_outs, layout, meta):
    names, outs = run_ort(model_path, feeds)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(framework_outs, outs))
    with open(os.path.join(OUT, f"{name}.preprocess.json"), "w") as f:
        json.dump(pre, f, indent=2)
        f.write("\n")
    doc = {
        "provenance": provenance(meta),
        "model": f"{name}.onnx",
        "inputs": "inputs.npz",
        "image_layout": layout,
        "preprocess": f"{name}.preprocess.json",
        "framework_vs_onnxruntime_max_abs_diff": worst,
        # float32 values printed with repr() of their float64 widening: exact round trip.
        "onnxruntime_outputs": {n: o.astype(np.float64).tolist() for n, o in zip(names, outs)},
        "output_order": names,
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{name}: {os.path.getsize(model_path)} B, outputs {names}, framework vs ORT {worst:.2e}")


# ---------------------------------------------------------------------------------------------
# PyTorch networks.


def torch_fixtures(images, redshift):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)

    def randomize_bn(bn):
        with torch.no_grad():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)

    class CfBn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(BANDS, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.d1 = nn.Linear(8 * 12 * 12 + 1, 32)
            self.bnd = nn.BatchNorm1d(32)
            self.head = nn.Linear(32, 2)

        def forward(self, x, z):
            x = F.relu(self.bn1(self.c1(x)))
            x = F.max_pool2d(x, 2)
            x = F.leaky_relu(self.c2(x), 0.1)
            x = F.avg_pool2d(x, 2)  # 25 -> 12, the last row and column dropped
            x = torch.cat([torch.flatten(x, 1), z], 1)
            x = F.leaky_relu(self.bnd(self.d1(x)), 0.1)
            return self.head(x)

    class GapMatmulMass(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(BANDS, 12, 3, stride=2)
            self.c2 = nn.Conv2d(12, 16, 3, padding=2, dilation=2)
            self.w1 = nn.Parameter(torch.randn(17, 24) / 4.0)
            self.b1 = nn.Parameter(torch.randn(24) * 0.3)
            self.w2 = nn.Parameter(torch.randn(24, 1) / 5.0)
            self.b2 = nn.Parameter(torch.tensor([14.2]))

        def forward(self, x, z):
            x = F.leaky_relu(self.c1(x), 0.05)
            x = F.relu(self.c2(x))
            x = F.adaptive_avg_pool2d(x, 1)
            x = torch.cat([z, torch.flatten(x, 1)], 1)  # the redshift first
            x = F.relu(torch.matmul(x, self.w1) + self.b1)
            return torch.matmul(x, self.w2) + self.b2

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(BANDS, 8, 5, padding=2)
            self.c2 = nn.Conv2d(8, 8, 3)
            self.d1 = nn.Linear(8 * 6 * 6 + 1, 16)
            self.mu = nn.Linear(16, 1)
            self.sigma = nn.Linear(16, 1)

        def forward(self, x, z):
            x = F.avg_pool2d(x, 2)
            x = F.leaky_relu(self.c1(x), 0.1)
            x = F.max_pool2d(x, 3)  # 25 -> 8, remainder dropped
            x = F.leaky_relu(self.c2(x), 0.1)
            x = torch.cat([torch.flatten(x, 1), z], 1)
            x = F.leaky_relu(self.d1(x), 0.1)
            return self.mu(x), F.softplus(self.sigma(x))

    nets = [
        (
            "torch_cf_bn",
            CfBn,
            ["mu_raw_sigma"],
            dict(training=torch.onnx.TrainingMode.PRESERVE),
            {"band_scale": [0.6 + 0.1 * b for b in range(BANDS)], "z_shift": 0.5, "z_scale": 2.0, "sigma_floor": 0.01},
        ),
        (
            "torch_gap_matmul_mass",
            GapMatmulMass,
            ["log_mass"],
            {},
            {"band_scale": [1.0] * BANDS, "z_shift": 0.0, "z_scale": 1.0},
        ),
        (
            "torch_two_heads",
            TwoHeads,
            ["log_mass", "sigma"],
            {},
            {"band_scale": [0.8] * BANDS, "z_shift": 0.6, "z_scale": 1.5, "sigma_floor": 0.005},
        ),
    ]
    for name, cls, out_names, kw, pre in nets:
        net = cls()
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                randomize_bn(m)
        if name == "torch_cf_bn":
            with torch.no_grad():
                net.head.bias.copy_(torch.tensor([14.3, -1.5]))
        if name == "torch_two_heads":
            with torch.no_grad():
                net.mu.bias.fill_(14.1)
                net.sigma.bias.fill_(-2.0)
        net.eval()
        x, z = preprocess(images, redshift, pre)
        path = os.path.join(OUT, f"{name}.onnx")
        dyn = {"image": {0: "n"}, "redshift": {0: "n"}}
        dyn.update({o: {0: "n"} for o in out_names})
        torch.onnx.export(
            net,
            (torch.from_numpy(x[:1]), torch.from_numpy(z[:1])),
            path,
            input_names=["image", "redshift"],
            output_names=out_names,
            dynamic_axes=dyn,
            opset_version=OPSET,
            do_constant_folding=True,
            **kw,
        )
        with torch.no_grad():
            outs = net(torch.from_numpy(x), torch.from_numpy(z))
        outs = outs if isinstance(outs, tuple) else (outs,)
        write_fixture(
            name,
            path,
            pre,
            {"image": x, "redshift": z},
            [o.numpy() for o in outs],
            "NCHW",
            {"framework": "pytorch", "exporter": f"torch.onnx.export (TorchScript), opset {OPSET}"},
        )


# ---------------------------------------------------------------------------------------------
# Keras networks (channels last), converted by tf2onnx.


def keras_fixtures(images, redshift):
    import tensorflow as tf
    import tf2onnx
    from tensorflow import keras

    L = keras.layers
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED + 1)

    def keras_cl():
        img = keras.Input((SIDE, SIDE, BANDS), name="image")
        z = keras.Input((1,), name="redshift")
        x = L.Conv2D(8, 3, padding="same")(img)
        x = L.BatchNormalization()(x)
        x = L.LeakyReLU(0.2)(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(8, 3, padding="valid")(x)
        x = L.LeakyReLU(0.2)(x)
        x = L.AveragePooling2D(2)(x)
        x = L.Flatten()(x)  # H, W, C order
        x = L.Concatenate()([x, z])
        x = L.Dense(32)(x)
        x = L.LeakyReLU(0.2)(x)
        x = L.Dropout(0.2)(x)
        out = L.Dense(2, name="mu_raw_sigma")(x)
        return keras.Model([img, z], out)

    def keras_lab():
        img = keras.Input((SIDE, SIDE, BANDS), name="image")
        z = keras.Input((1,), name="redshift")
        x = img
        for _ in range(3):
            x = L.Conv2D(20, 2, padding="valid")(x)
            x = L.LeakyReLU(0.3)(x)
        x = L.MaxPooling2D(4)(x)
        for _ in range(2):
            x = L.Conv2D(20, 2, padding="valid")(x)
            x = L.LeakyReLU(0.3)(x)
        x = L.MaxPooling2D(4)(x)
        x = L.Flatten()(x)
        x = L.Concatenate()([x, z])
        for units in [512, 256, 128, 64]:
            x = L.Dense(units)(x)
            x = L.LeakyReLU(0.3)(x)
            x = L.Dropout(0.2)(x)
        out = L.Dense(1, name="log_mass")(x)
        return keras.Model([img, z], out)

    def keras_gap():
        img = keras.Input((SIDE, SIDE, BANDS), name="image")
        z = keras.Input((1,), name="redshift")
        x = L.AveragePooling2D(2)(img)
        x = L.Conv2D(12, 3, padding="same", dilation_rate=2)(x)
        x = L.ReLU()(x)
        x = L.Conv2D(12, 3, strides=2)(x)
        x = L.LeakyReLU(0.1)(x)
        x = L.GlobalAveragePooling2D()(x)  # tf2onnx: GlobalAveragePool + Squeeze
        x = L.Concatenate()([z, x])
        x = L.Dense(16, activation="relu")(x)
        out = L.Dense(2, name="mu_raw_sigma")(x)
        return keras.Model([img, z], out)

    nets = [
        ("keras_gap", keras_gap, {"band_scale": 0.9, "z_shift": 0.3, "z_scale": 1.2, "sigma_floor": 0.01, "sigma_calibration": {"kind": "scale", "scale": 1.25}}),
        ("keras_cl", keras_cl, {"band_scale": [0.5 + 0.05 * b for b in range(BANDS)], "z_shift": 0.4, "z_scale": 1.0, "sigma_floor": 0.02}),
        ("keras_lab", keras_lab, {"band_scale": [1.0] * BANDS, "z_shift": 0.0, "z_scale": 1.0}),
    ]
    for name, build, pre in nets:
        model = build()
        # Non-trivial biases and batch-norm statistics (Keras initialises biases to zero, which
        # tf2onnx would drop).
        for layer in model.layers:
            w = layer.get_weights()
            if isinstance(layer, L.BatchNormalization):
                g, b, mean, var = w
                layer.set_weights([
                    rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                    rng.uniform(-0.2, 0.2, b.shape).astype(np.float32),
                    rng.uniform(-0.3, 0.3, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 2.0, var.shape).astype(np.float32),
                ])
            elif len(w) == 2:
                bias = rng.uniform(-0.1, 0.1, w[1].shape).astype(np.float32)
                if layer.name in ("mu_raw_sigma", "log_mass"):
                    bias[0] += 14.2
                layer.set_weights([w[0], bias])
        x, z = preprocess(images, redshift, pre)
        x_nhwc = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))
        spec = (
            tf.TensorSpec((None, SIDE, SIDE, BANDS), tf.float32, name="image"),
            tf.TensorSpec((None, 1), tf.float32, name="redshift"),
        )
        path = os.path.join(OUT, f"{name}.onnx")
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=path)
        keras_out = model([x_nhwc, z], training=False).numpy()
        write_fixture(
            name,
            path,
            pre,
            {"image": x_nhwc, "redshift": z},
            [keras_out],
            "NHWC",
            {"framework": "keras (tf.keras)", "exporter": f"tf2onnx.convert.from_keras, opset {OPSET}"},
        )


# ---------------------------------------------------------------------------------------------
# Hand-built graphs for the spellings exporters rarely emit (still valid ONNX, run by onnxruntime).


def helper_fixtures(images, redshift):
    rng = np.random.default_rng(SEED + 3)

    def const(name, arr):
        return numpy_helper.from_array(np.asarray(arr, dtype=arr.dtype if hasattr(arr, "dtype") else np.float32), name)

    def rnd(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def save(name, nodes, inits, inputs, outputs, pre, feeds_of):
        g = helper.make_graph(nodes, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_fixtures.py (onnx.helper)")
        onnx.checker.check_model(m)
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(m, path)
        feeds = feeds_of(*preprocess(images, redshift, pre))
        _, outs = run_ort(path, feeds)
        write_fixture(name, path, pre, feeds, outs, "NCHW", {"framework": "onnx.helper (no training framework; reference = onnxruntime)", "exporter": f"onnx.helper, opset {OPSET}"})

    # Gemm with alpha, beta and transB = 0, a bias Add kept separate, a Reshape [0, -1] flatten,
    # the redshift given as [N] and unsqueezed, Dropout and Identity, SAME_LOWER padding, a
    # ceil_mode pool whose window divides the input.
    f = 4 * 10 * 10
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv_same_lower", kernel_shape=[3, 3], auto_pad="SAME_LOWER"),
        helper.make_node("Identity", ["c"], ["ci"], name="identity"),
        helper.make_node("LeakyRelu", ["ci"], ["a"], name="leaky", alpha=0.15),
        helper.make_node("MaxPool", ["a"], ["mp"], name="pool_ceil", kernel_shape=[5, 5], strides=[5, 5], ceil_mode=1),
        helper.make_node("Reshape", ["mp", "shape"], ["flat"], name="reshape_0_m1"),
        helper.make_node("Unsqueeze", ["redshift", "axes1"], ["z2"], name="unsqueeze_z"),
        helper.make_node("Concat", ["flat", "z2"], ["feat"], axis=1, name="concat"),
        helper.make_node("Gemm", ["feat", "w1", "b1"], ["h0"], name="gemm_alpha_beta", alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Add", ["h0", "b1x"], ["h1"], name="separate_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("Dropout", ["h2"], ["h3"], name="dropout"),
        helper.make_node("Gemm", ["h3", "w2", "b2"], ["out"], name="head", transB=1),
    ]
    inits = [
        rnd("cw", (4, BANDS, 3, 3), 0.3), rnd("cb", (4,), 0.1),
        const("shape", np.array([0, -1], dtype=np.int64)), const("axes1", np.array([1], dtype=np.int64)),
        rnd("w1", (f + 1, 8), 0.05), rnd("b1", (8,), 0.1), rnd("b1x", (1, 8), 0.1),
        rnd("w2", (2, 8), 0.3), numpy_helper.from_array(np.array([14.2, -1.0], dtype=np.float32), "b2"),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, SIDE, SIDE]),
        helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
    pre = {"band_scale": 0.7, "z_shift": 0.2, "z_scale": 2.5}
    save("helper_spellings", nodes, inits, inputs, outputs, pre, lambda x, z: {"image": x, "redshift": z[:, 0]})

    # No redshift input at all; BatchNormalization after a Gemm; mass only.
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv", kernel_shape=[5, 5], strides=[3, 3]),
        helper.make_node("Relu", ["c"], ["a"], name="relu"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h"], name="dense", transB=1),
        helper.make_node("BatchNormalization", ["h", "g1", "be1", "m1", "v1"], ["hb"], name="bn1d", epsilon=1e-3),
        helper.make_node("LeakyRelu", ["hb"], ["ha"], name="leaky", alpha=0.2),
        helper.make_node("Gemm", ["ha", "w2", "b2"], ["mass"], name="head", transB=1),
    ]
    inits = [
        rnd("cw", (6, BANDS, 5, 5), 0.2), rnd("cb", (6,), 0.1),
        rnd("w1", (8, 6), 0.5), rnd("b1", (8,), 0.1),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "g1"),
        rnd("be1", (8,), 0.1), rnd("m1", (8,), 0.2),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, 8).astype(np.float32), "v1"),
        rnd("w2", (1, 8), 0.3), numpy_helper.from_array(np.array([14.0], dtype=np.float32), "b2"),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, SIDE, SIDE])]
    outputs = [helper.make_tensor_value_info("mass", TensorProto.FLOAT, ["n", 1])]
    save("helper_no_redshift", nodes, inits, inputs, outputs, {"band_scale": 1.0}, lambda x, z: {"image": x})


# ---------------------------------------------------------------------------------------------
# Graphs codegen must refuse, built with onnx.helper on a tiny 10 x 8 x 8 input.


def bad_fixtures():
    rng = np.random.default_rng(SEED + 2)
    bad_dir = os.path.join(OUT, "bad")
    os.makedirs(bad_dir, exist_ok=True)

    def const(name, shape, lo=-0.3, hi=0.3):
        return numpy_helper.from_array(rng.uniform(lo, hi, shape).astype(np.float32), name)

    def graph(name, body, inits, out="out", out_shape=("n", 2), image=("n", BANDS, 8, 8), extra_outputs=()):
        inputs = [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, list(image)),
            helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n", 1]),
        ]
        outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))]
        outputs += [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(shape)) for o, shape in extra_outputs]
        g = helper.make_graph(body, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_fixtures.py")
        onnx.checker.check_model(m)
        return m

    def tail(src, c, prefix=""):
        """GlobalAveragePool -> Flatten -> Concat(z) -> Gemm(2): a valid end for `c` channels."""
        nodes = [
            helper.make_node("GlobalAveragePool", [src], ["gap"], name=prefix + "gap"),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name=prefix + "flatten"),
            helper.make_node("Concat", ["flat", "redshift"], ["feat"], axis=1, name=prefix + "concat"),
            helper.make_node("Gemm", ["feat", "head_w", "head_b"], ["out"], transB=1, name=prefix + "head"),
        ]
        return nodes, [const("head_w", (2, c + 1)), const("head_b", (2,))]

    def conv(name, src, dst, wname, k=(3, 3), c_in=BANDS, c_out=4, **attrs):
        node = helper.make_node("Conv", [src, wname, wname + "_b"], [dst], name=name, **attrs)
        groups = attrs.get("group", 1)
        return node, [const(wname, (c_out, c_in // groups) + tuple(k)), const(wname + "_b", (c_out,))]

    cases = []

    def case(file, model, expect, why):
        onnx.save(model, os.path.join(bad_dir, file))
        cases.append({"file": file, "expect": expect, "why": why})

    def conv_case(file, expect, why, k=(3, 3), c_out=4, **attrs):
        n, w = conv("bad_conv", "image", "y", "w", k=k, c_out=c_out, **attrs)
        t, tw = tail("y", c_out)
        case(file, graph(file, [n] + t, w + tw), expect, why)

    conv_case("nonsquare_kernel.onnx", ["bad_conv", "Conv", "3x1", "square"], "non-square kernel", k=(3, 1), kernel_shape=[3, 1], pads=[1, 0, 1, 0])
    conv_case("strides_per_axis.onnx", ["bad_conv", "Conv", "strides [1, 2]"], "strides differ per axis", kernel_shape=[3, 3], strides=[1, 2])
    conv_case("asymmetric_pads.onnx", ["bad_conv", "Conv", "pads [1, 1, 0, 0]", "symmetric"], "asymmetric pads", kernel_shape=[3, 3], pads=[1, 1, 0, 0])
    conv_case("groups.onnx", ["bad_conv", "Conv", "group 2", "group 1"], "grouped convolution", kernel_shape=[3, 3], group=2)
    conv_case("same_upper_even.onnx", ["bad_conv", "Conv", "SAME_UPPER", "2x2"], "auto_pad SAME with an even kernel pads asymmetrically", k=(2, 2), kernel_shape=[2, 2], auto_pad="SAME_UPPER")
    conv_case("pad_stride2.onnx", ["bad_conv", "Conv", "stride 2", "same"], "padding with stride 2", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    conv_case("pad_not_same.onnx", ["bad_conv", "Conv", "pads [2, 2, 2, 2]", "same"], "padding other than same or valid", kernel_shape=[3, 3], pads=[2, 2, 2, 2])

    def pool_case(file, op, expect, why, **attrs):
        n, w = conv("conv0", "image", "c", "w")  # 8x8 -> 6x6: a window of 4 leaves a remainder
        p = helper.make_node(op, ["c"], ["y"], name="bad_pool", **attrs)
        t, tw = tail("y", 4)
        case(file, graph(file, [n, p] + t, w + tw), expect, why)

    pool_case("pool_window_ne_stride.onnx", "MaxPool", ["bad_pool", "MaxPool", "window 3", "stride 2"], "pooling window differs from its stride", kernel_shape=[3, 3], strides=[2, 2])
    pool_case("pool_ceil_mode.onnx", "MaxPool", ["bad_pool", "MaxPool", "ceil_mode"], "ceil_mode=1 on a size that is not a multiple of the window", kernel_shape=[4, 4], strides=[4, 4], ceil_mode=1)
    pool_case("avgpool_pads.onnx", "AveragePool", ["bad_pool", "AveragePool", "pads"], "padded average pooling", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1])
    pool_case("pool_dilated.onnx", "MaxPool", ["bad_pool", "MaxPool", "dilations"], "dilated pooling", kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 2])

    # An operator the runtime has no kernel for.
    n, w = conv("conv0", "image", "c", "w")
    s = helper.make_node("Sigmoid", ["c"], ["y"], name="bad_sigmoid")
    t, tw = tail("y", 4)
    case("unsupported_op.onnx", graph("unsupported_op", [n, s] + t, w + tw), ["bad_sigmoid", "Sigmoid", "not supported", "LeakyRelu"], "unsupported operator")

    # A residual connection: not a single chain of layers.
    n1, w1 = conv("conv0", "image", "c0", "w0", pads=[1, 1, 1, 1])
    n2, w2 = conv("conv1", "c0", "c1", "w1", c_in=4, pads=[1, 1, 1, 1])
    add = helper.make_node("Add", ["c0", "c1"], ["y"], name="bad_residual")
    t, tw = tail("y", 4)
    case("residual.onnx", graph("residual", [n1, n2, add] + t, w1 + w2 + tw), ["bad_residual", "Add"], "residual connection")

    # Conv on a tensor that is not NCHW: the graph transposes the channels-first input away.
    tr = helper.make_node("Transpose", ["image"], ["t"], perm=[0, 2, 3, 1], name="to_nhwc")
    n, w = conv("bad_conv", "t", "y", "w", c_in=8)
    t, tw = tail("y", 4)
    case("conv_on_nhwc.onnx", graph("conv_on_nhwc", [tr, n] + t, w + tw), ["bad_conv", "Conv", "layout"], "convolution over the wrong axes")

    # The redshift joins after the first dense layer.
    n, w = conv("conv0", "image", "c", "w")
    nodes = [
        n,
        helper.make_node("GlobalAveragePool", ["c"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "d_w", "d_b"], ["h"], transB=1, name="dense0"),
        helper.make_node("Concat", ["h", "redshift"], ["feat"], axis=1, name="late_concat"),
        helper.make_node("Gemm", ["feat", "head_w", "head_b"], ["out"], transB=1, name="head"),
    ]
    inits = w + [const("d_w", (6, 4)), const("d_b", (6,)), const("head_w", (2, 7)), const("head_b", (2,))]
    case("late_redshift.onnx", graph("late_redshift", nodes, inits), ["late_concat", "Concat", "redshift"], "redshift concatenated after a dense layer")

    # Gemm with transA = 1.
    n, w = conv("conv0", "image", "c", "w")
    nodes = [
        n,
        helper.make_node("GlobalAveragePool", ["c"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Concat", ["flat", "redshift"], ["feat"], axis=1, name="concat"),
        helper.make_node("Transpose", ["feat"], ["featT"], perm=[1, 0], name="transpose_feat"),
        helper.make_node("Gemm", ["featT", "head_w", "head_b"], ["out"], transA=1, transB=1, name="bad_gemm"),
    ]
    inits = w + [const("head_w", (2, 5)), const("head_b", (2,))]
    case("gemm_trans_a.onnx", graph("gemm_trans_a", nodes, inits), ["transpose_feat", "Transpose"], "features transposed into the batch axis")

    # A sigma output that is not raw or Softplus(raw).
    n, w = conv("conv0", "image", "c", "w")
    t, tw = tail("c", 4)
    t[-1] = helper.make_node("Gemm", ["feat", "head_w", "head_b"], ["mu"], transB=1, name="head_mu")
    nodes = [n] + t + [
        helper.make_node("Gemm", ["feat", "s_w", "s_b"], ["s"], transB=1, name="head_sigma"),
        helper.make_node("Exp", ["s"], ["sigma"], name="bad_exp"),
    ]
    tw = [const("head_w", (1, 5)), const("head_b", (1,)), const("s_w", (1, 5)), const("s_b", (1,))]
    m = graph("sigma_exp", nodes, w + tw, out="mu", out_shape=("n", 1), extra_outputs=(("sigma", ("n", 1)),))
    case("sigma_exp.onnx", m, ["bad_exp", "Exp", "Softplus"], "sigma output through Exp")

    # Three outputs.
    n, w = conv("conv0", "image", "c", "w")
    t, tw = tail("c", 4)
    m = graph("three_outputs", [n] + t, w + tw, extra_outputs=(("c", ("n", 4, 8, 8)), ("feat", ("n", 5))))
    case("three_outputs.onnx", m, ["3 outputs", "one or two"], "three graph outputs")

    # A head of 3 units.
    n, w = conv("conv0", "image", "c", "w")
    t, tw = tail("c", 4)
    tw = [const("head_w", (3, 5)), const("head_b", (3,))]
    case("head3.onnx", graph("head3", [n] + t, w + tw, out_shape=("n", 3)), ["head", "3 units", "1 or 2"], "head of 3 units")

    # A reshape whose target is computed from shapes (x.view(x.size(0), -1) with a dynamic batch)
    # is folded at import now: make_keras3_fixtures.py has it as the accepted helper_view_batch,
    # and the shape chains that cannot be folded in bad/cases-shapes.json.

    with open(os.path.join(bad_dir, "cases.json"), "w") as f:
        json.dump({"provenance": provenance({"what": "graphs codegen export --onnx must refuse"}), "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"bad: {len(cases)} graphs")


def main():
    os.makedirs(OUT, exist_ok=True)
    images, redshift = make_inputs()
    np.savez_compressed(os.path.join(OUT, "inputs.npz"), images=images, redshift=redshift, exposure_s=make_exposures())
    torch_fixtures(images, redshift)
    keras_fixtures(images, redshift)
    helper_fixtures(images, redshift)
    bad_fixtures()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"total fixture size {total} B")


if __name__ == "__main__":
    sys.exit(main())
