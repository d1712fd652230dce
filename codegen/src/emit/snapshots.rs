//! Snapshot tests of the emitters: per op kind, and per dtype where its code differs, what
//! the op emits (its kernel type, its blob fields with the loader's checks, the call of its
//! step), formatted by prettyplease and compared exactly with
//! `codegen/tests/snapshots/<case>.<dtype>.snap`. A dtype left out of a case's list emits
//! the same code as `f32` (checked), so every op's code on every path is in a snapshot
//! and a change to any of it shows up in review.
//!
//! When a test fails, its message shows the first differing lines. If the change is meant,
//! rewrite the snapshots and review their diff with the commit:
//!
//! ```text
//! UPDATE_SNAPSHOTS=1 cargo test --release -p codegen emit::snapshots
//! git diff codegen/tests/snapshots
//! ```
//!
//! A snapshot file that no case writes fails `no_stale_snapshots` (delete it).

use super::fields::Field;
use super::model::fields;
use super::ops::{self, EmitOp, Preprocess, emitter};
use super::tokens::inner_docs;
use super::{Cx, Path, unparse};
use crate::arch::PoolKind;
use crate::model::{FoldedModel, Model, Op};
use crate::testutil::{Rng, e30_dir, model, model_a, model_b};
use proc_macro2::TokenStream;
use quote::quote;
use std::path::PathBuf;

/// The models the cases take their ops from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The committed `edge` run: pooling fused with the preprocessing, a streamed
    /// convolution, convolutions fused with their pooling, concat, dense, head.
    Edge,
    /// `testutil::model_a`: a convolution alone (dilated, ReLU), one fused with max pooling.
    A,
    /// `testutil::model_b`: the preprocessing alone, a strided convolution, global average
    /// pooling, a stand-alone leaky ReLU.
    B,
    /// Two poolings: the first fused with the preprocessing, the second alone.
    Pools,
}

impl Source {
    fn model(self) -> FoldedModel {
        let mut rng = Rng::new(16);
        match self {
            Source::Edge => Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap(),
            Source::A => model_a(&mut rng),
            Source::B => model_b(&mut rng),
            Source::Pools => model(
                2,
                8,
                8,
                vec![
                    Op::Pool2d {
                        kind: PoolKind::Max,
                        size: 2,
                    },
                    Op::Pool2d {
                        kind: PoolKind::Avg,
                        size: 2,
                    },
                    Op::FlattenConcatZ,
                    crate::testutil::dense(&mut rng, 9, 2, 1.0),
                ],
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Source::Edge => "edge",
            Source::A => "testutil::model_a",
            Source::B => "testutil::model_b",
            Source::Pools => "two poolings",
        }
    }
}

/// What a case emits.
#[derive(Debug, Clone, Copy)]
enum Emit {
    /// The preprocessing step alone (with its int8 in-place form).
    Preprocess,
    /// The step of op `i` (for the first op fused with the preprocessing, with its int8
    /// in-place form).
    Op(usize),
    /// The streamed step of convolution `i`.
    Streamed(usize),
}

/// One snapshot case: an op kind, where its example comes from, and the dtypes whose code
/// differs (the others must equal the first's).
struct Case {
    name: &'static str,
    source: Source,
    emit: Emit,
    paths: &'static [Path],
}

const FLOAT_INT8: &[Path] = &[Path::F32, Path::Int8];
const EVERY: &[Path] = &Path::ALL;

const CASES: &[Case] = &[
    Case {
        name: "preprocess",
        source: Source::B,
        emit: Emit::Preprocess,
        paths: FLOAT_INT8,
    },
    Case {
        name: "pool2d_preprocess",
        source: Source::Edge,
        emit: Emit::Op(0),
        paths: FLOAT_INT8,
    },
    Case {
        name: "pool2d",
        source: Source::Pools,
        emit: Emit::Op(1),
        paths: FLOAT_INT8,
    },
    Case {
        name: "global_avg_pool",
        source: Source::B,
        emit: Emit::Op(1),
        paths: FLOAT_INT8,
    },
    Case {
        name: "conv2d_rows",
        source: Source::A,
        emit: Emit::Op(2),
        paths: EVERY,
    },
    Case {
        name: "conv2d_pooled",
        source: Source::Edge,
        emit: Emit::Op(3),
        paths: EVERY,
    },
    Case {
        name: "conv2d_streamed",
        source: Source::Edge,
        emit: Emit::Streamed(1),
        paths: EVERY,
    },
    Case {
        name: "dense",
        source: Source::Edge,
        emit: Emit::Op(8),
        paths: EVERY,
    },
    Case {
        name: "dense_head",
        source: Source::Edge,
        emit: Emit::Op(9),
        paths: EVERY,
    },
    Case {
        name: "flatten_concat_z",
        source: Source::Edge,
        emit: Emit::Op(7),
        paths: FLOAT_INT8,
    },
    Case {
        name: "leaky_relu",
        source: Source::B,
        emit: Emit::Op(2),
        paths: FLOAT_INT8,
    },
];

/// The code of `case` on `path`, without its title: the op's kernel type, a `Model` with
/// just its fields, their loading (`new`, blob indices as in the whole model's blob) and
/// the step's call (`step`; `in_place` where the int8 model can run over the counts).
fn body(cx: &Cx, case: &Case, path: Path) -> TokenStream {
    let all = fields(cx, path);
    let (kernel, own, call) = match case.emit {
        Emit::Preprocess => {
            let st = cx.steps.iter().find(|s| s.op.is_none()).unwrap();
            (quote!(), vec![], Preprocess.call(cx, st, path).unwrap())
        }
        Emit::Op(i) => {
            let e = emitter(cx, i);
            let st = cx
                .steps
                .iter()
                .find(|s| s.op == Some(i))
                .expect("the op runs a step of its own");
            (
                e.kernel_type(cx).unwrap(),
                e.fields(path),
                ops::step(cx, st, path).unwrap(),
            )
        }
        Emit::Streamed(i) => {
            let e = emitter(cx, i);
            let st = cx.stream.expect("a streamed model");
            assert_eq!(st.conv, i);
            let call = cx.conv(i).unwrap().streamed_call(cx, &st, path).unwrap();
            (e.kernel_type(cx).unwrap(), e.fields(path), call)
        }
    };
    let in_place = match (case.emit, path) {
        (Emit::Preprocess, Path::Int8) => Some(Preprocess.in_place_call()),
        (Emit::Op(0), Path::Int8) if matches!(cx.m.ops[0], Op::Pool2d { .. }) => {
            Some(cx.pool(0).unwrap().in_place_call())
        }
        _ => None,
    }
    .map(|c| quote!(fn in_place(&self) { #c }));
    let model = if own.is_empty() {
        quote!()
    } else {
        let decls = own.iter().map(Field::decl);
        let loads = own.iter().map(|f| {
            let k = all.iter().position(|g| g == f).unwrap();
            f.load(k, &all).unwrap()
        });
        quote! {
            pub struct Model<'a> { #(#decls,)* }
            impl<'a> Model<'a> {
                fn new(b: Blob<'a>) -> Result<Self, BlobError> { #(#loads)* }
            }
        }
    };
    quote! {
        #kernel
        #model
        impl Model<'_> {
            fn step(&self) { #call }
            #in_place
        }
    }
}

/// The snapshot file of `case` on `path`.
fn file(case: &Case, path: Path) -> PathBuf {
    dir().join(format!("{}.{}.snap", case.name, path.name()))
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Check (or with `UPDATE_SNAPSHOTS=1` write) the snapshots of case `name`.
fn check(name: &str) {
    let case = CASES.iter().find(|c| c.name == name).unwrap();
    let m = case.source.model();
    let cx = Cx::new(&m).unwrap();
    let what = match case.emit {
        Emit::Preprocess => "the preprocessing step".to_string(),
        Emit::Op(i) => format!("op {i} ({})", cx.descs[i]),
        Emit::Streamed(i) => format!("op {i} ({}) streaming its input", cx.descs[i]),
    };
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for &path in case.paths {
        let title = inner_docs(&[
            format!(
                "Snapshot `{}`, {}: {what} of {}.",
                case.name,
                path.name(),
                case.source.name()
            ),
            "Fragments of the generated module, parsed and formatted (not compiled); written by"
                .into(),
            "`UPDATE_SNAPSHOTS=1 cargo test --release -p codegen emit::snapshots`.".into(),
        ]);
        let body = body(&cx, case, path);
        let got = unparse(quote!(#title #body)).unwrap();
        let f = file(case, path);
        if update {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&f, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&f).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n{}",
                f.display(),
                first_difference(&want, &got)
            ));
        }
    }
    // The dtypes left out emit what the first listed does.
    for path in Path::ALL.into_iter().filter(|p| !case.paths.contains(p)) {
        let first = case.paths[0];
        assert_eq!(
            body(&cx, case, path).to_string(),
            body(&cx, case, first).to_string(),
            "{name}: {} differs from {}: give it a snapshot",
            path.name(),
            first.name()
        );
    }
    assert!(
        failures.is_empty(),
        "the emitted code changed; if that is meant, run `UPDATE_SNAPSHOTS=1 cargo test --release -p codegen emit::snapshots` and review the diff\n{}",
        failures.join("\n")
    );
}

/// The first lines where `want` and `got` differ, with a line of context.
fn first_difference(want: &str, got: &str) -> String {
    if want.is_empty() {
        return "  (no snapshot yet)".into();
    }
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let k = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
    let from = k.saturating_sub(1);
    let show = |lines: &[&str], sign: char| {
        lines
            .iter()
            .skip(from)
            .take(6)
            .map(|l| format!("  {sign} {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "  at line {}\n  expected:\n{}\n  emitted:\n{}",
        k + 1,
        show(&w, '-'),
        show(&g, '+')
    )
}

#[test]
fn preprocess() {
    check("preprocess");
}

#[test]
fn pool2d_preprocess() {
    check("pool2d_preprocess");
}

#[test]
fn pool2d() {
    check("pool2d");
}

#[test]
fn global_avg_pool() {
    check("global_avg_pool");
}

#[test]
fn conv2d_rows() {
    check("conv2d_rows");
}

#[test]
fn conv2d_pooled() {
    check("conv2d_pooled");
}

#[test]
fn conv2d_streamed() {
    check("conv2d_streamed");
}

#[test]
fn dense() {
    check("dense");
}

#[test]
fn dense_head() {
    check("dense_head");
}

#[test]
fn flatten_concat_z() {
    check("flatten_concat_z");
}

#[test]
fn leaky_relu() {
    check("leaky_relu");
}

/// Every case has its test above, and every snapshot file belongs to a case.
#[test]
fn no_stale_snapshots() {
    let src = include_str!("snapshots.rs");
    for c in CASES {
        assert!(
            src.contains(&format!("check(\"{}\");", c.name)),
            "case {} has no test",
            c.name
        );
    }
    let want: Vec<PathBuf> = CASES
        .iter()
        .flat_map(|c| c.paths.iter().map(move |&p| file(c, p)))
        .collect();
    for e in std::fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        assert!(
            want.contains(&p),
            "{} is no case's snapshot: delete it",
            p.display()
        );
    }
}
