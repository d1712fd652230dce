#!/usr/bin/env python3
"""Generate the Keras 3 and shape-chain fixtures of `codegen/tests/onnx.rs`.

A second script beside `make_fixtures.py` because Keras 3 needs tensorflow >= 2.16, which cannot
live in that script's environment (tensorflow 2.15, numpy < 2). Run (under a minute on 2 cores;
the Rust tests need no Python, the outputs are committed):

    python3 -m venv /tmp/keras3-venv
    /tmp/keras3-venv/bin/pip install -r scripts/onnx-fixtures/requirements-keras3.txt
    /tmp/keras3-venv/bin/python scripts/onnx-fixtures/make_keras3_fixtures.py

It reads the committed `inputs.npz` (checking that it is what `make_fixtures.make_inputs()`
makes) and writes into `codegen/tests/fixtures/onnx/`, as `make_fixtures.py` does: per network
`<name>.onnx`, `<name>.preprocess.json` and `<name>.json` (provenance, the framework's outputs
and onnxruntime's outputs on the 4 clusters), and `bad/shape_*.onnx` + `bad/cases-shapes.json`.

Networks:

- `keras3_flatten`: Keras 3 (tensorflow backend), channels last, exported by
  `tf2onnx.convert.from_keras` with a dynamic batch. Keras 3's `Flatten` computes its target
  shape from `ops.shape(x)[0]`, so the file holds the chain Shape -> Gather -> Cast -> Slice ->
  Concat -> Cast -> Reshape (checked below: the script fails if the chain is missing). Conv2D
  same + BatchNormalization + LeakyReLU, MaxPooling2D, Conv2D valid + LeakyReLU,
  AveragePooling2D with a dropped remainder, Flatten, Concatenate(redshift), Dense, Dropout,
  Dense(2).
- `keras3_reshape`: Keras 3, `keras.layers.Reshape((-1,))` as the flatten (the same kind of
  chain: `ops.shape(x)[0]` joined with the resolved size), the redshift concatenated first,
  mass-only output.
- `helper_shape_chain` (onnx.helper, reference outputs from onnxruntime): the chain spelt by
  hand with more of the operators a shape sub-graph uses: Shape with `start`, Gather with a
  permutation and with a scalar index, Cast to int32 and back, Slice, ReduceProd, Mul and Div
  by constants, Unsqueeze, Squeeze, Concat, a rank-1 redshift reshaped to [N, 1] by a computed
  target.
- `helper_view_batch`: PyTorch's `x.view(x.size(0), -1)` spelling (Shape -> Gather(0) ->
  Unsqueeze -> Concat(-1) -> Reshape), which used to be refused.

Bad graphs (must be refused; `cases-shapes.json` lists the words the error must contain): a
target shape computed from the redshift's values, arithmetic on the batch size, an image input
with dynamic spatial dimensions (a Keras model built with `keras.Input((None, None, 10))`).
"""

import datetime
import json
import os
import platform
import sys

# tf2onnx's graph optimiser iterates over sets of names: without a fixed hash seed its node order
# and constant names change from run to run (the computation does not). Re-run with a fixed one
# so the files are byte-identical.
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
from make_fixtures import BANDS, OPSET, OUT, SEED, SIDE, make_inputs, preprocess, run_ort  # noqa: E402

SCRIPT = "scripts/onnx-fixtures/make_keras3_fixtures.py"
CHAIN = ["Shape", "Gather", "Cast", "Slice", "Concat", "Cast", "Reshape"]


def versions():
    import keras
    import tensorflow as tf
    import tf2onnx

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
    }


def provenance(extra):
    p = {
        "generated_by": SCRIPT,
        "command": f"python {SCRIPT} (requirements-keras3.txt in the same folder)",
        "seed": SEED,
        "date": datetime.date.today().isoformat(),
        "versions": versions(),
        "note": "Do not edit: regenerate with the script.",
    }
    p.update(extra)
    return p


def op_types(path):
    return [n.op_type for n in onnx.load(path).graph.node]


def write_fixture(name, model_path, pre, feeds, framework_outs, layout, meta):
    names, outs = run_ort(model_path, feeds)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(framework_outs, outs))
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
        "framework_vs_onnxruntime_max_abs_diff": worst,
        # float32 values printed with repr() of their float64 widening: exact round trip.
        "onnxruntime_outputs": {n: o.astype(np.float64).tolist() for n, o in zip(names, outs)},
        "output_order": names,
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{name}: {os.path.getsize(model_path)} B, outputs {names}, framework vs ORT {worst:.2e}")
    print(f"  ops: {' '.join(meta['op_types'])}")


def canonical_names(path):
    """Renumber tf2onnx's generated names (`const_fold_opt__51`, `Transpose__42:0`): its
    optimiser numbers them, picks one of several equal constants and orders the initializers in
    ways that change from run to run (the graph does not). Each generated name becomes
    `<stem>__c<k>` (`const__c<k>` for a constant) with k its order of first appearance, and the
    initializers are stored in that order; nothing else changes."""
    import re

    m = onnx.load(path)
    g = m.graph
    pattern = re.compile(r"^(.*?)__\d+(:\d+)?$")
    order = []
    for n in g.node:
        order += [n.name] + list(n.input) + list(n.output)
    order += [t.name for t in g.initializer]
    consts = {t.name for t in g.initializer}
    mapping = {}
    for name in order:
        mt = pattern.match(name)
        if mt and name not in mapping:
            stem = "const" if name in consts else mt.group(1)
            mapping[name] = f"{stem}__c{len(mapping)}{mt.group(2) or ''}"
    keep = {v.name for v in list(g.input) + list(g.output)}
    mapping = {k: v for k, v in mapping.items() if k not in keep}
    for n in g.node:
        n.name = mapping.get(n.name, n.name)
        n.input[:] = [mapping.get(x, x) for x in n.input]
        n.output[:] = [mapping.get(x, x) for x in n.output]
    for t in g.initializer:
        t.name = mapping.get(t.name, t.name)
    first = {}
    for n in g.node:
        for x in n.input:
            first.setdefault(x, len(first))
    inits = sorted(g.initializer, key=lambda t: first.get(t.name, len(first)))
    inits = [onnx.TensorProto.FromString(t.SerializeToString()) for t in inits]
    g.ClearField("initializer")
    g.initializer.extend(inits)
    for v in g.value_info:
        v.name = mapping.get(v.name, v.name)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def contains_chain(ops, chain):
    """Whether `chain` occurs in `ops` in order (other nodes may sit between)."""
    it = iter(ops)
    return all(any(o == c for o in it) for c in chain)


# ---------------------------------------------------------------------------------------------
# Keras 3 networks (channels last), converted by tf2onnx.


def keras3_fixtures(images, redshift):
    import keras
    import tensorflow as tf
    import tf2onnx

    assert int(keras.__version__.split(".")[0]) >= 3, f"Keras 3 needed, found {keras.__version__}"
    L = keras.layers
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED + 5)

    def keras3_flatten():
        img = keras.Input((SIDE, SIDE, BANDS), name="image")
        z = keras.Input((1,), name="redshift")
        x = L.Conv2D(8, 3, padding="same")(img)
        x = L.BatchNormalization()(x)
        x = L.LeakyReLU(negative_slope=0.2)(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(8, 3, padding="valid")(x)
        x = L.LeakyReLU(negative_slope=0.2)(x)
        x = L.AveragePooling2D(2)(x)  # 23 -> 11, the last row and column dropped
        x = L.Flatten()(x)  # H, W, C order; Keras 3: reshape to (ops.shape(x)[0], 968)
        x = L.Concatenate()([x, z])
        x = L.Dense(24)(x)
        x = L.LeakyReLU(negative_slope=0.2)(x)
        x = L.Dropout(0.2)(x)
        out = L.Dense(2, name="mu_raw_sigma")(x)
        return keras.Model([img, z], out)

    def keras3_reshape():
        img = keras.Input((SIDE, SIDE, BANDS), name="image")
        z = keras.Input((1,), name="redshift")
        x = L.AveragePooling2D(2)(img)
        x = L.Conv2D(6, 3, strides=2)(x)
        x = L.ReLU()(x)
        x = L.MaxPooling2D(3)(x)  # 12 -> 4
        x = L.Reshape((-1,))(x)  # Keras 3: reshape to (ops.shape(x)[0], 96)
        x = L.Concatenate()([z, x])
        x = L.Dense(16, activation="relu")(x)
        out = L.Dense(1, name="log_mass")(x)
        return keras.Model([img, z], out)

    nets = [
        ("keras3_flatten", keras3_flatten, {"band_scale": [0.55 + 0.04 * b for b in range(BANDS)], "z_shift": 0.35, "z_scale": 1.5, "sigma_floor": 0.01}),
        ("keras3_reshape", keras3_reshape, {"band_scale": 0.8, "z_shift": 0.0, "z_scale": 1.0}),
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
        spec = [
            tf.TensorSpec((None, SIDE, SIDE, BANDS), tf.float32, name="image"),
            tf.TensorSpec((None, 1), tf.float32, name="redshift"),
        ]
        path = os.path.join(OUT, f"{name}.onnx")
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=path)
        canonical_names(path)
        ops = op_types(path)
        assert contains_chain(ops, CHAIN), f"{name}: the dynamic flatten chain is missing: {ops}"
        keras_out = np.asarray(model([x_nhwc, z], training=False))
        write_fixture(
            name,
            path,
            pre,
            {"image": x_nhwc, "redshift": z},
            [keras_out],
            "NHWC",
            {
                "framework": f"keras {keras.__version__} (tensorflow backend)",
                "exporter": f"tf2onnx.convert.from_keras(model, input_signature=[TensorSpec((None, {SIDE}, {SIDE}, {BANDS})), TensorSpec((None, 1))], opset={OPSET})",
            },
        )


# ---------------------------------------------------------------------------------------------
# Hand-built shape chains (valid ONNX, run by onnxruntime).


def i64(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def i32(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int32), name)


def helper_fixtures(images, redshift):
    rng = np.random.default_rng(SEED + 6)

    def rnd(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def save(name, nodes, inits, inputs, outputs, pre, feeds_of, chain):
        g = helper.make_graph(nodes, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_keras3_fixtures.py (onnx.helper)")
        onnx.checker.check_model(m, full_check=True)
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(m, path)
        assert contains_chain(op_types(path), chain), name
        feeds = feeds_of(*preprocess(images, redshift, pre))
        _, outs = run_ort(path, feeds)
        write_fixture(name, path, pre, feeds, outs, "NCHW", {"framework": "onnx.helper (no training framework; reference = onnxruntime)", "exporter": f"onnx.helper, opset {OPSET}"})

    # Conv 10->4 3x3 stride 2 (50 -> 24), MaxPool 4 (-> 6), Transpose to N,H,W,C, then a flatten
    # whose target [N, 144] is computed: the batch as tf2onnx computes it (Shape of the pooled
    # NCHW tensor, Gather with the transpose's permutation, Cast int32, Slice [0:1]) and the
    # feature count from Shape(start=1) -> Identity -> Cast int32 -> Gather [0], [1], [2] -> Mul,
    # Mul -> Add to itself -> Div 2 -> Sub 0, joined by Concat in int32 and cast back. The
    # redshift comes as [N] and is reshaped to [N, 1] by Shape -> Gather(scalar 0) -> Unsqueeze
    # -> Concat(ConstantOfShape([1]) = [1]) -> Unsqueeze/Squeeze round trip -> Reshape [-1].
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("LeakyRelu", ["c"], ["a"], name="leaky", alpha=0.1),
        helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Transpose", ["p"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["p"], ["s"], name="shape_of_pool"),
        helper.make_node("Gather", ["s", "perm"], ["sg"], name="gather_perm", axis=0),
        helper.make_node("Cast", ["sg"], ["s32"], name="cast_i32", to=TensorProto.INT32),
        helper.make_node("Slice", ["s32", "zero1", "one1", "zero1"], ["batch"], name="slice_batch"),
        helper.make_node("Shape", ["t"], ["st0"], name="shape_tail", start=1),
        helper.make_node("Identity", ["st0"], ["st"], name="shape_identity"),
        helper.make_node("Cast", ["st"], ["st32"], name="shape_tail_i32", to=TensorProto.INT32),
        helper.make_node("Gather", ["st32", "zero1"], ["hh"], name="height", axis=0),
        helper.make_node("Gather", ["st32", "one1"], ["ww"], name="width", axis=0),
        helper.make_node("Gather", ["st32", "two1"], ["cc"], name="channels", axis=0),
        helper.make_node("Mul", ["hh", "ww"], ["hw"], name="h_times_w"),
        helper.make_node("Mul", ["hw", "cc"], ["f"], name="features"),
        helper.make_node("Add", ["f", "f"], ["f2"], name="twice"),
        helper.make_node("Div", ["f2", "two"], ["f1"], name="over_two"),
        helper.make_node("Sub", ["f1", "zero32"], ["fs"], name="minus_zero"),
        helper.make_node("Concat", ["batch", "fs"], ["target32"], name="target_concat", axis=0),
        helper.make_node("Cast", ["target32"], ["target"], name="cast_i64", to=TensorProto.INT64),
        helper.make_node("Reshape", ["t", "target"], ["flat"], name="flatten_computed"),
        helper.make_node("Shape", ["redshift"], ["sz"], name="shape_of_z"),
        helper.make_node("Gather", ["sz", "zero"], ["n0"], name="batch_scalar", axis=0),
        helper.make_node("Unsqueeze", ["n0", "zero1"], ["n1"], name="batch_vec"),
        helper.make_node("ConstantOfShape", ["one1"], ["ones"], name="ones", value=numpy_helper.from_array(np.array([1], dtype=np.int64))),
        helper.make_node("Concat", ["n1", "ones"], ["tz2"], name="z_target", axis=0),
        helper.make_node("Unsqueeze", ["tz2", "zero1"], ["tz3"], name="z_target_up"),
        helper.make_node("Squeeze", ["tz3", "zero1"], ["tz4"], name="z_target_down"),
        helper.make_node("Reshape", ["tz4", "minus1"], ["tz"], name="z_target_flat"),
        helper.make_node("Reshape", ["redshift", "tz"], ["z2"], name="z_to_column"),
        helper.make_node("Concat", ["flat", "z2"], ["feat"], name="concat", axis=1),
        helper.make_node("Gemm", ["feat", "w1", "b1"], ["h"], name="dense", transB=1),
        helper.make_node("Relu", ["h"], ["ha"], name="relu"),
        helper.make_node("Gemm", ["ha", "w2", "b2"], ["out"], name="head", transB=1),
    ]
    f = 4 * 6 * 6
    inits = [
        rnd("cw", (4, BANDS, 3, 3), 0.3), rnd("cb", (4,), 0.1),
        i64("perm", [0, 2, 3, 1]), i64("zero1", [0]), i64("one1", [1]), i64("zero", 0), i64("two1", [2]), i64("minus1", [-1]),
        i32("two", [2]), i32("zero32", [0]),
        rnd("w1", (12, f + 1), 0.08), rnd("b1", (12,), 0.1),
        rnd("w2", (2, 12), 0.3), numpy_helper.from_array(np.array([14.1, -1.2], dtype=np.float32), "b2"),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, SIDE, SIDE]),
        helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
    pre = {"band_scale": 0.75, "z_shift": 0.25, "z_scale": 2.0}
    save("helper_shape_chain", nodes, inits, inputs, outputs, pre, lambda x, z: {"image": x, "redshift": z[:, 0]}, CHAIN)

    # x.view(x.size(0), -1) with a dynamic batch, as torch.onnx.export writes it.
    nodes = [
        helper.make_node("Conv", ["image", "cw", "cb"], ["c"], name="conv", kernel_shape=[5, 5], strides=[5, 5]),
        helper.make_node("Relu", ["c"], ["a"], name="relu"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Shape", ["g"], ["s"], name="/Shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["g", "target"], ["flat"], name="/Reshape"),
        helper.make_node("Concat", ["flat", "redshift"], ["feat"], name="/Concat_1", axis=1),
        helper.make_node("Gemm", ["feat", "w1", "b1"], ["out"], name="/head/Gemm", transB=1),
    ]
    inits = [
        rnd("cw", (6, BANDS, 5, 5), 0.2), rnd("cb", (6,), 0.1),
        i64("zero", 0), i64("zero1", [0]), i64("minus1", [-1]),
        rnd("w1", (2, 7), 0.5), numpy_helper.from_array(np.array([14.0, -0.8], dtype=np.float32), "b1"),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", BANDS, SIDE, SIDE]),
        helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n", 1]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
    save("helper_view_batch", nodes, inits, inputs, outputs, {"band_scale": 1.0}, lambda x, z: {"image": x, "redshift": z}, ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"])


# ---------------------------------------------------------------------------------------------
# Shape chains that cannot be folded, on a tiny 10 x 8 x 8 input.


def bad_fixtures():
    rng = np.random.default_rng(SEED + 7)
    bad_dir = os.path.join(OUT, "bad")
    os.makedirs(bad_dir, exist_ok=True)

    def const(name, shape):
        return numpy_helper.from_array(rng.uniform(-0.3, 0.3, shape).astype(np.float32), name)

    def graph(name, body, inits, image=("n", BANDS, 8, 8)):
        inputs = [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, list(image)),
            helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["n", 1]),
        ]
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])]
        # The computed Reshape's output declared (onnx-ir needs its rank; ONNX's own shape
        # inference cannot tell it from a target computed from data).
        flat = [helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["n", 4])]
        g = helper.make_graph(body, name, inputs, outputs, inits, value_info=flat)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_keras3_fixtures.py")
        onnx.checker.check_model(m)
        return m

    def head(src):
        """Conv 10->4 3x3 -> GlobalAveragePool, then `src` nodes computing `target`, the Reshape,
        Concat(z) and Gemm(2)."""
        nodes = [
            helper.make_node("Conv", ["image", "w", "wb"], ["c"], name="conv0", kernel_shape=[3, 3]),
            helper.make_node("GlobalAveragePool", ["c"], ["gap"], name="gap"),
            *src,
            helper.make_node("Reshape", ["gap", "target"], ["flat"], name="flatten_reshape"),
            helper.make_node("Concat", ["flat", "redshift"], ["feat"], axis=1, name="concat"),
            helper.make_node("Gemm", ["feat", "head_w", "head_b"], ["out"], transB=1, name="head"),
        ]
        inits = [const("w", (4, BANDS, 3, 3)), const("wb", (4,)), const("head_w", (2, 5)), const("head_b", (2,))]
        return nodes, inits

    cases = []

    def case(file, model, expect, why):
        onnx.save(model, os.path.join(bad_dir, file))
        cases.append({"file": file, "expect": expect, "why": why})

    # The target's first entry is the redshift's value cast to an integer: data-dependent.
    nodes, inits = head([
        helper.make_node("Cast", ["redshift"], ["zi"], name="shape_from_redshift", to=TensorProto.INT64),
        helper.make_node("Slice", ["zi", "zero1", "one1", "zero1"], ["zs"], name="first_cluster"),
        helper.make_node("Squeeze", ["zs", "one1"], ["z1"], name="squeeze_z"),
        helper.make_node("Concat", ["z1", "minus1"], ["target"], axis=0, name="target_concat"),
    ])
    inits += [i64("zero1", [0]), i64("one1", [1]), i64("minus1", [-1])]
    case(
        "shape_from_data.onnx",
        graph("shape_from_data", nodes, inits),
        ["shape_from_redshift", "Cast", "flatten_reshape", "from the data", "Keras", "keras.layers.Flatten", "input_signature", "PyTorch", "torch.flatten"],
        "a reshape target computed from the redshift's values",
    )

    # Shape -> Gather(0) -> Mul 4: the batch size times 4 is not fixed at export.
    nodes, inits = head([
        helper.make_node("Shape", ["gap"], ["s"], name="shape_of_gap"),
        helper.make_node("Gather", ["s", "zero1"], ["b"], axis=0, name="batch_dim"),
        helper.make_node("Mul", ["b", "four"], ["b4"], name="batch_times_4"),
        helper.make_node("Concat", ["b4", "minus1"], ["target"], axis=0, name="target_concat"),
    ])
    inits += [i64("zero1", [0]), i64("four", [4]), i64("minus1", [-1])]
    case(
        "shape_batch_product.onnx",
        graph("shape_batch_product", nodes, inits),
        ["batch_times_4", "Mul", "batch size", "flatten_reshape", "Keras"],
        "arithmetic on the dynamic batch size",
    )

    # keras.Input((None, None, 10)): the image's spatial size is not fixed.
    n = helper.make_node("Transpose", ["image"], ["t"], perm=[0, 3, 1, 2], name="to_nchw")
    nodes, inits = head([
        helper.make_node("Shape", ["gap"], ["s"], name="shape_of_gap"),
        helper.make_node("Gather", ["s", "zero1"], ["b"], axis=0, name="batch_dim"),
        helper.make_node("Concat", ["b", "minus1"], ["target"], axis=0, name="target_concat"),
    ])
    nodes[0] = helper.make_node("Conv", ["t", "w", "wb"], ["c"], name="conv0", kernel_shape=[3, 3])
    inits += [i64("zero1", [0]), i64("minus1", [-1])]
    case(
        "shape_dynamic_input.onnx",
        graph("shape_dynamic_input", [n] + nodes, inits, image=("n", "h", "w", BANDS)),
        ["image", "dynamic dimension", "keras.Input", "input_signature"],
        "an image input of dynamic height and width",
    )

    with open(os.path.join(bad_dir, "cases-shapes.json"), "w") as f:
        json.dump({"provenance": provenance({"what": "shape chains codegen export --onnx must refuse"}), "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"bad: {len(cases)} graphs")


def main():
    images, redshift = make_inputs()
    committed = np.load(os.path.join(OUT, "inputs.npz"))
    assert np.array_equal(committed["images"], images) and np.array_equal(committed["redshift"], redshift), (
        "inputs.npz differs from make_fixtures.make_inputs(): regenerate it with make_fixtures.py first"
    )
    keras3_fixtures(images, redshift)
    helper_fixtures(images, redshift)
    bad_fixtures()


if __name__ == "__main__":
    sys.exit(main())
