#!/usr/bin/env python3
"""Generate the fixtures of `codegen/tests/onnx.rs` for networks with an auxiliary scalar input
(the cluster's exposure) besides the image and the redshift.

A third script beside `make_fixtures.py` and `make_keras3_fixtures.py`, so that the fixtures
those made stay byte-identical. It needs PyTorch and Keras 3 in one environment
(`requirements-aux.txt`: the Keras 3 environment plus torch). Run (about a minute on 2 cores;
the Rust tests need no Python, the outputs are committed):

    python3 -m venv /tmp/aux-venv
    /tmp/aux-venv/bin/pip install -r scripts/onnx-fixtures/requirements-aux.txt
    /tmp/aux-venv/bin/python scripts/onnx-fixtures/make_aux_fixtures.py

It checks that the committed `inputs.npz` holds `make_fixtures.make_inputs()`'s images and
redshifts, and rewrites it with the same arrays plus `exposure_s` f32 [4]
(`make_fixtures.make_exposures()`: log-uniform in [300, 30000] s). Then it writes into
`codegen/tests/fixtures/onnx/`, per network, `<name>.onnx`, `<name>.preprocess.json` (with the
sidecar's `extra` entries naming the exposure input) and `<name>.json`: provenance, the
framework's own outputs on the 4 clusters (`framework_outputs`: the torch forward, Keras'
`model(...)`, or onnxruntime for the onnx.helper graphs) and onnxruntime's
(`onnxruntime_outputs`); and `bad/aux_*.onnx` + `bad/cases-aux.json` (graphs that must be
refused, each with the sidecar to import it with and the words the error must contain): an
exposure input the sidecar does not describe, one that joins after the first dense layer, one of
shape [N, 2], one in float64, one concatenated twice.

The network's exposure input is `(log10(exposure_s) - shift) * scale` (f32), as the runtime
computes it from the raw exposure.

Networks:

- `torch_exposure`: PyTorch, channels first, inputs `image`, `redshift` [N, 1], `exposure`
  [N, 1]; Conv + BatchNorm2d + ReLU, MaxPool, Conv + LeakyReLU, AveragePool, Flatten,
  `torch.cat([features, z, t], 1)` (one Concat of three), Gemm + LeakyReLU, head Gemm (mu, raw
  sigma).
- `torch_exposure_first`: PyTorch, the graph inputs in the order `image`, `exposure`, `redshift`,
  the exposure given as [N] and unsqueezed, concatenated *before* the features and the redshift
  after them (`torch.cat([t, features, z], 1)`): the first dense layer's rows are permuted to the
  runtime's order (features, z, t). GlobalAveragePool, MatMul + Add dense layers, mass only.
- `keras3_exposure`: Keras 3 through tf2onnx, channels last, `Concatenate()([x, t, z])` (the
  exposure before the redshift), Flatten as the computed shape chain, Dense(2).
- `helper_exposure_nested` (onnx.helper, reference = onnxruntime): two exposure inputs (the
  sidecar lists `t_soft`, then `t_hard`, with different shifts and scales), joined by two nested
  Concats in another order (`Concat(Concat(flat, t_hard), z, t_soft)`), the redshift given as [N]
  and reshaped.
- `helper_exposure_no_redshift` (onnx.helper): an exposure input and no redshift input: the
  runtime still passes z', with zero weights.
"""

import datetime
import json
import os
import platform
import sys

# tf2onnx's optimiser iterates over sets of names (see make_keras3_fixtures.py).
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import BANDS, OPSET, OUT, SEED, SIDE, make_exposures, make_inputs, preprocess, run_ort  # noqa: E402
from make_keras3_fixtures import CHAIN, canonical_names, contains_chain, op_types  # noqa: E402

SCRIPT = "scripts/onnx-fixtures/make_aux_fixtures.py"


def versions():
    import keras
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
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
    }


def provenance(extra):
    p = {
        "generated_by": SCRIPT,
        "command": f"python {SCRIPT} (requirements-aux.txt in the same folder)",
        "seed": SEED,
        "date": datetime.date.today().isoformat(),
        "versions": versions(),
        "note": "Do not edit: regenerate with the script.",
    }
    p.update(extra)
    return p


def exposure_feature(exposure_s, shift, scale):
    """The runtime's auxiliary input in f32: (log10 t - shift) * scale, as [N, 1]."""
    t = np.log10(exposure_s.astype(np.float32)).astype(np.float32)
    return ((t - np.float32(shift)) * np.float32(scale)).astype(np.float32)[:, None]


def write_fixture(name, model_path, pre, feeds, framework_outs, layout, meta):
    names, outs = run_ort(model_path, feeds)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(framework_outs, outs))
    assert worst < 1e-4, f"{name}: the framework and onnxruntime differ by {worst}"
    with open(os.path.join(OUT, f"{name}.preprocess.json"), "w") as f:
        json.dump(pre, f, indent=2)
        f.write("\n")
    meta = dict(meta, op_types=op_types(model_path))
    doc = {
        "provenance": provenance(meta),
        "model": f"{name}.onnx",
        "inputs": "inputs.npz",
        "image_layout": layout,
        "preprocess": f"{name}.preprocess.json",
        "graph_inputs": [i.name for i in onnx.load(model_path).graph.input],
        "framework_vs_onnxruntime_max_abs_diff": worst,
        # float32 values printed with repr() of their float64 widening: exact round trip.
        "framework_outputs": {n: np.asarray(o, np.float32).astype(np.float64).tolist() for n, o in zip(names, framework_outs)},
        "onnxruntime_outputs": {n: o.astype(np.float64).tolist() for n, o in zip(names, outs)},
        "output_order": names,
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{name}: {os.path.getsize(model_path)} B, outputs {names}, framework vs ORT {worst:.2e}")
    print(f"  ops: {' '.join(meta['op_types'])}")


# ---------------------------------------------------------------------------------------------
# PyTorch.


def torch_fixtures(images, redshift, exposure):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(SEED + 20)
    torch.use_deterministic_algorithms(True)

    class Exposure(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(BANDS, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 6, 3)
            self.d1 = nn.Linear(6 * 11 * 11 + 2, 24)
            self.head = nn.Linear(24, 2)

        def forward(self, x, z, t):
            x = F.relu(self.bn1(self.c1(x)))
            x = F.max_pool2d(x, 2)
            x = F.leaky_relu(self.c2(x), 0.1)
            x = F.avg_pool2d(x, 2)  # 50 -> 25 -> 23 -> 11, the last row and column dropped
            x = torch.cat([torch.flatten(x, 1), z, t], 1)
            x = F.leaky_relu(self.d1(x), 0.1)
            return self.head(x)

    class ExposureFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(BANDS, 12, 3, stride=2)
            self.c2 = nn.Conv2d(12, 16, 3, padding=1)
            self.w1 = nn.Parameter(torch.randn(18, 20) / 4.0)
            self.b1 = nn.Parameter(torch.randn(20) * 0.3)
            self.w2 = nn.Parameter(torch.randn(20, 1) / 4.0)
            self.b2 = nn.Parameter(torch.tensor([14.1]))

        def forward(self, x, t, z):
            x = F.leaky_relu(self.c1(x), 0.05)
            x = F.relu(self.c2(x))
            x = F.adaptive_avg_pool2d(x, 1)
            x = torch.cat([t.unsqueeze(1), torch.flatten(x, 1), z], 1)  # exposure first, z last
            x = F.relu(torch.matmul(x, self.w1) + self.b1)
            return torch.matmul(x, self.w2) + self.b2

    nets = [
        (
            "torch_exposure",
            Exposure,
            ["image", "redshift", "exposure"],
            ["mu_raw_sigma"],
            {
                "band_scale": [0.6 + 0.05 * b for b in range(BANDS)],
                "z_shift": 0.5,
                "z_scale": 2.0,
                "sigma_floor": 0.01,
                "extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.3, "scale": 1.6}],
            },
        ),
        (
            "torch_exposure_first",
            ExposureFirst,
            ["image", "exposure", "redshift"],
            ["log_mass"],
            {
                "band_scale": 0.8,
                "z_shift": 0.3,
                "z_scale": 1.5,
                "extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.0, "scale": 2.5}],
            },
        ),
    ]
    for name, cls, in_names, out_names, pre in nets:
        net = cls()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        if name == "torch_exposure":
            with torch.no_grad():
                net.head.bias.copy_(torch.tensor([14.3, -1.5]))
                # The exposure's row of the first dense layer: large enough that it matters.
                net.d1.weight[:, -1].uniform_(-1.0, 1.0)
        else:
            with torch.no_grad():
                net.w1[0].uniform_(-1.0, 1.0)
        net.eval()
        e = pre["extra"][0]
        x, z = preprocess(images, redshift, pre)
        t = exposure_feature(exposure, e["shift"], e["scale"])
        feeds = {"image": x, "redshift": z, "exposure": t if name == "torch_exposure" else t[:, 0]}
        args = [torch.from_numpy(feeds[n]) for n in in_names]
        path = os.path.join(OUT, f"{name}.onnx")
        dyn = {n: {0: "n"} for n in in_names + out_names}
        torch.onnx.export(
            net,
            tuple(a[:1] for a in args),
            path,
            input_names=in_names,
            output_names=out_names,
            dynamic_axes=dyn,
            opset_version=OPSET,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.PRESERVE if name == "torch_exposure" else torch.onnx.TrainingMode.EVAL,
        )
        with torch.no_grad():
            outs = net(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        write_fixture(
            name,
            path,
            pre,
            feeds,
            [o.numpy() for o in outs],
            "NCHW",
            {"framework": "pytorch", "exporter": f"torch.onnx.export (TorchScript), opset {OPSET}"},
        )


# ---------------------------------------------------------------------------------------------
# Keras 3.


def keras3_fixtures(images, redshift, exposure):
    import keras
    import tensorflow as tf
    import tf2onnx

    assert int(keras.__version__.split(".")[0]) >= 3, f"Keras 3 needed, found {keras.__version__}"
    L = keras.layers
    keras.utils.set_random_seed(SEED + 21)
    rng = np.random.default_rng(SEED + 22)

    img = keras.Input((SIDE, SIDE, BANDS), name="image")
    z = keras.Input((1,), name="redshift")
    t = keras.Input((1,), name="exposure")
    x = L.AveragePooling2D(2)(img)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    x = L.MaxPooling2D(3)(x)  # 25 -> 8
    x = L.Flatten()(x)  # H, W, C order; the computed shape chain
    x = L.Concatenate()([x, t, z])  # the exposure before the redshift
    x = L.Dense(16, activation="relu")(x)
    out = L.Dense(2, name="mu_raw_sigma")(x)
    model = keras.Model([img, z, t], out)
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
            kernel = w[0]
            if layer.name == "mu_raw_sigma":
                bias[0] += 14.2
            if isinstance(layer, L.Dense) and kernel.shape[0] == 8 * 8 * 8 + 2:
                kernel = kernel.copy()
                kernel[-2] = rng.uniform(-1.0, 1.0, kernel.shape[1])  # the exposure's row
            layer.set_weights([kernel, bias])
    pre = {
        "band_scale": [0.55 + 0.04 * b for b in range(BANDS)],
        "z_shift": 0.35,
        "z_scale": 1.5,
        "sigma_floor": 0.01,
        "extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.5, "scale": 2.0}],
    }
    e = pre["extra"][0]
    xs, zs = preprocess(images, redshift, pre)
    ts = exposure_feature(exposure, e["shift"], e["scale"])
    x_nhwc = np.ascontiguousarray(np.transpose(xs, (0, 2, 3, 1)))
    spec = [
        tf.TensorSpec((None, SIDE, SIDE, BANDS), tf.float32, name="image"),
        tf.TensorSpec((None, 1), tf.float32, name="redshift"),
        tf.TensorSpec((None, 1), tf.float32, name="exposure"),
    ]
    name = "keras3_exposure"
    path = os.path.join(OUT, f"{name}.onnx")
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=path)
    canonical_names(path)
    ops = op_types(path)
    assert contains_chain(ops, CHAIN), f"{name}: the dynamic flatten chain is missing: {ops}"
    keras_out = np.asarray(model([x_nhwc, zs, ts], training=False))
    write_fixture(
        name,
        path,
        pre,
        {"image": x_nhwc, "redshift": zs, "exposure": ts},
        [keras_out],
        "NHWC",
        {
            "framework": f"keras {keras.__version__} (tensorflow backend)",
            "exporter": f"tf2onnx.convert.from_keras(model, input_signature=[TensorSpec((None, {SIDE}, {SIDE}, {BANDS})), TensorSpec((None, 1)), TensorSpec((None, 1))], opset={OPSET})",
        },
    )


# ---------------------------------------------------------------------------------------------
# onnx.helper graphs (reference = onnxruntime).


def helper_fixtures(images, redshift, exposure):
    rng = np.random.default_rng(SEED + 23)

    def rnd(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def i64(name, values):
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    def save(name, nodes, inits, inputs, outputs, pre, feeds):
        g = helper.make_graph(nodes, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_aux_fixtures.py (onnx.helper)")
        onnx.checker.check_model(m, full_check=True)
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(m, path)
        _, outs = run_ort(path, feeds)
        write_fixture(name, path, pre, feeds, outs, "NCHW", {"framework": "onnx.helper (no training framework; reference = onnxruntime)", "exporter": f"onnx.helper, opset {OPSET}"})

    # Two exposure inputs; the sidecar lists t_soft then t_hard (runtime vector: features, z,
    # t_soft, t_hard), the graph joins them as Concat(Concat(flat, t_hard), z, t_soft).
    f = 4 * 8 * 8
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3], strides=[3, 3]),
        helper.make_node("LeakyRelu", ["c"], ["a"], name="leaky", alpha=0.1),
        helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["flat"], name="flatten", axis=1),
        helper.make_node("Concat", ["flat", "t_hard"], ["ft"], name="concat_hard", axis=1),
        helper.make_node("Reshape", ["redshift", "col"], ["z2"], name="z_to_column"),
        helper.make_node("Concat", ["ft", "z2", "t_soft"], ["feat"], name="concat_z_soft", axis=1),
        helper.make_node("Gemm", ["feat", "w1", "b1"], ["h"], name="dense", transB=1),
        helper.make_node("Relu", ["h"], ["ha"], name="relu"),
        helper.make_node("Gemm", ["ha", "w2", "b2"], ["out"], name="head", transB=1),
    ]
    w1 = (rng.standard_normal((12, f + 3)) * 0.08).astype(np.float32)
    w1[:, f:] = rng.uniform(-1.0, 1.0, (12, 3)).astype(np.float32)  # t_hard, z, t_soft
    inits = [
        rnd("cw", (4, BANDS, 3, 3), 0.3), rnd("cb", (4,), 0.1), i64("col", [-1, 1]),
        numpy_helper.from_array(w1, "w1"), rnd("b1", (12,), 0.1),
        rnd("w2", (2, 12), 0.3), numpy_helper.from_array(np.array([14.1, -1.2], dtype=np.float32), "b2"),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, SIDE, SIDE]),
        helper.make_tensor_value_info("t_hard", TensorProto.FLOAT, ["n", 1]),
        helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n"]),
        helper.make_tensor_value_info("t_soft", TensorProto.FLOAT, ["n", 1]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
    pre = {
        "band_scale": 0.75,
        "z_shift": 0.25,
        "z_scale": 2.0,
        "extra": [
            {"input": "t_soft", "quantity": "exposure_s", "shift": 3.0, "scale": 1.5},
            {"input": "t_hard", "quantity": "exposure_s", "shift": 4.0, "scale": -2.0},
        ],
    }
    x, z = preprocess(images, redshift, pre)
    feeds = {
        "image": x,
        "redshift": z[:, 0],
        "t_soft": exposure_feature(exposure, 3.0, 1.5),
        "t_hard": exposure_feature(exposure, 4.0, -2.0),
    }
    save("helper_exposure_nested", nodes, inits, inputs, outputs, pre, feeds)

    # An exposure input and no redshift input.
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv", kernel_shape=[5, 5], strides=[5, 5]),
        helper.make_node("Relu", ["c"], ["a"], name="relu"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["flat"], name="flatten", axis=1),
        helper.make_node("Concat", ["exposure", "flat"], ["feat"], name="concat", axis=1),
        helper.make_node("Gemm", ["feat", "w1", "b1"], ["out"], name="head", transB=1),
    ]
    inits = [
        rnd("cw", (6, BANDS, 5, 5), 0.2), rnd("cb", (6,), 0.1),
        rnd("w1", (2, 7), 0.5), numpy_helper.from_array(np.array([14.0, -0.8], dtype=np.float32), "b1"),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, SIDE, SIDE]),
        helper.make_tensor_value_info("exposure", TensorProto.FLOAT, ["n", 1]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
    pre = {"band_scale": 1.0, "extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.5, "scale": 3.0}]}
    x, _ = preprocess(images, redshift, pre)
    save("helper_exposure_no_redshift", nodes, inits, inputs, outputs, pre, {"image": x, "exposure": exposure_feature(exposure, 3.5, 3.0)})


# ---------------------------------------------------------------------------------------------
# Graphs with an auxiliary input that must be refused, on a tiny 10 x 8 x 8 input.


def bad_fixtures():
    rng = np.random.default_rng(SEED + 24)
    bad_dir = os.path.join(OUT, "bad")
    os.makedirs(bad_dir, exist_ok=True)

    def const(name, shape):
        return numpy_helper.from_array(rng.uniform(-0.3, 0.3, shape).astype(np.float32), name)

    def graph(name, body, inits, exposure=(TensorProto.FLOAT, ["n", 1])):
        inputs = [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, 8, 8]),
            helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info("exposure", exposure[0], exposure[1]),
        ]
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
        g = helper.make_graph(body, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_aux_fixtures.py")
        onnx.checker.check_model(m)
        return m

    def body(concat_inputs, n_in):
        nodes = [
            helper.make_node("Conv", ["image", "w", "wb"], ["c"], name="conv0", kernel_shape=[3, 3]),
            helper.make_node("GlobalAveragePool", ["c"], ["gap"], name="gap"),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
            helper.make_node("Concat", concat_inputs, ["feat"], axis=1, name="concat"),
            helper.make_node("Gemm", ["feat", "head_w", "head_b"], ["out"], transB=1, name="head"),
        ]
        return nodes, [const("w", (4, BANDS, 3, 3)), const("wb", (4,)), const("head_w", (2, n_in)), const("head_b", (2,))]

    described = {"extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.5, "scale": 2.0}]}
    cases = []

    def case(file, model, sidecar, expect, why, names_sidecar=False):
        """`sidecar`: what the test imports the graph with (written to a file first);
        `names_sidecar`: the error must also name that file."""
        onnx.save(model, os.path.join(bad_dir, file))
        cases.append({"file": file, "sidecar": sidecar, "names_sidecar": names_sidecar, "expect": expect, "why": why})

    # A third input the sidecar does not describe.
    nodes, inits = body(["flat", "redshift", "exposure"], 6)
    case(
        "aux_undescribed.onnx",
        graph("aux_undescribed", nodes, inits),
        {},
        ["`redshift`", "`exposure`", "one value per cluster", "\"extra\"", "lists none", "exposure_s"],
        "an auxiliary input the sidecar does not describe",
        names_sidecar=True,
    )

    # The exposure joins after the first dense layer.
    nodes = [
        helper.make_node("Conv", ["image", "w", "wb"], ["c"], name="conv0", kernel_shape=[3, 3]),
        helper.make_node("GlobalAveragePool", ["c"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Concat", ["flat", "redshift"], ["feat"], axis=1, name="concat"),
        helper.make_node("Gemm", ["feat", "d_w", "d_b"], ["h"], transB=1, name="dense0"),
        helper.make_node("Concat", ["h", "exposure"], ["h2"], axis=1, name="late_exposure"),
        helper.make_node("Gemm", ["h2", "head_w", "head_b"], ["out"], transB=1, name="head"),
    ]
    inits = [const("w", (4, BANDS, 3, 3)), const("wb", (4,)), const("d_w", (6, 5)), const("d_b", (6,)), const("head_w", (2, 7)), const("head_b", (2,))]
    case(
        "aux_late.onnx",
        graph("aux_late", nodes, inits),
        described,
        ["dense0", "Gemm", "without the auxiliary input `exposure`", "late_exposure", "Concat", "before the first dense layer"],
        "an auxiliary input concatenated after a dense layer",
    )

    # The exposure input of shape [N, 2].
    nodes, inits = body(["flat", "redshift", "exposure"], 7)
    case(
        "aux_shape.onnx",
        graph("aux_shape", nodes, inits, exposure=(TensorProto.FLOAT, ["n", 2])),
        described,
        ["input `exposure`", "extra[0]", "exposure_s", "[N] or [N, 1]"],
        "an auxiliary input that is not one value per cluster",
        names_sidecar=True,
    )

    # The exposure input in float64.
    nodes, inits = body(["flat", "redshift", "exposure_f"], 6)
    nodes.insert(3, helper.make_node("Cast", ["exposure"], ["exposure_f"], name="cast_exposure", to=TensorProto.FLOAT))
    case(
        "aux_dtype.onnx",
        graph("aux_dtype", nodes, inits, exposure=(TensorProto.DOUBLE, ["n", 1])),
        described,
        ["input `exposure`", "extra[0]", "float32"],
        "an auxiliary input that is not float32",
        names_sidecar=True,
    )

    # The exposure concatenated twice.
    nodes, inits = body(["flat", "exposure", "redshift", "exposure"], 7)
    case(
        "aux_twice.onnx",
        graph("aux_twice", nodes, inits),
        described,
        ["concat", "Concat", "the auxiliary input `exposure`", "twice"],
        "an auxiliary input concatenated twice",
    )

    with open(os.path.join(bad_dir, "cases-aux.json"), "w") as f:
        json.dump({"provenance": provenance({"what": "graphs with auxiliary inputs codegen export --onnx must refuse (each with its sidecar)"}), "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"bad: {len(cases)} graphs")


def main():
    images, redshift = make_inputs()
    path = os.path.join(OUT, "inputs.npz")
    committed = np.load(path)
    assert np.array_equal(committed["images"], images) and np.array_equal(committed["redshift"], redshift), (
        "inputs.npz differs from make_fixtures.make_inputs(): regenerate it with make_fixtures.py first"
    )
    exposure = make_exposures()
    if "exposure_s" not in committed.files or not np.array_equal(committed["exposure_s"], exposure):
        np.savez_compressed(path, images=images, redshift=redshift, exposure_s=exposure)
        print(f"inputs.npz: exposure_s {exposure.tolist()} added")
    torch_fixtures(images, redshift, exposure)
    keras3_fixtures(images, redshift, exposure)
    helper_fixtures(images, redshift, exposure)
    bad_fixtures()


if __name__ == "__main__":
    sys.exit(main())
