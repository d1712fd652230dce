//! The blob tensors a generated `Model` reads, typed by what they are ([`Role`]): the role
//! decides the field's name, its element type, how it is stored (borrowed slice or array
//! copied at load), the blob getter and the value checks `Model::new` applies.

use super::Path;
use super::tokens::num;
use anyhow::{Context, Result};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

/// What one blob tensor is to the generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Tensor 0: the model constants (`Meta::from_slice` validates them).
    Meta,
    /// The weights of op `op` (float: every value finite).
    Weights {
        /// The op.
        op: usize,
    },
    /// The biases of op `op`; `taps` multiply-accumulates per output. int8: the loader checks
    /// that no accumulator can overflow (`|bias| + taps * 128 * 255`), once the layer's
    /// requantisation is read (a hidden layer, [`Role::RequantNeg`]) or at once (the head).
    Bias {
        /// The op.
        op: usize,
        /// Multiply-accumulates per output.
        taps: usize,
        /// Whether the op is the 2-unit head (no requantisation; its accumulators are
        /// scaled to f32 by [`Role::OutputScale`]).
        head: bool,
    },
    /// int8: the requantisation of op `op`'s non-negative accumulators, per output channel.
    RequantPos {
        /// The op.
        op: usize,
    },
    /// int8: the requantisation of op `op`'s negative accumulators (the fused leaky ReLU's
    /// slope folded in); with it read, the layer's accumulators are checked exact.
    RequantNeg {
        /// The op.
        op: usize,
        /// Multiply-accumulates per output of the layer.
        taps: usize,
    },
    /// int8: the (positive, negative) requantisation pair of a stand-alone leaky ReLU.
    LeakyPair {
        /// The op.
        op: usize,
    },
    /// int8: the head's f32 scale per output (accumulator to raw output).
    OutputScale {
        /// The op.
        op: usize,
    },
    /// int8: the scale of every activation tensor (the input, then each op's output).
    ActScales,
    /// int8: the zero point of every activation tensor, in [-128, 127].
    ZeroPoints,
}

/// The field of op `op`'s weights.
pub(super) fn weights(op: usize) -> Ident {
    format_ident!("w{op}")
}
/// The field of op `op`'s biases.
pub(super) fn bias(op: usize) -> Ident {
    format_ident!("b{op}")
}
/// The field of op `op`'s positive requantisation.
pub(super) fn requant_pos(op: usize) -> Ident {
    format_ident!("rp{op}")
}
/// The field of op `op`'s negative requantisation.
pub(super) fn requant_neg(op: usize) -> Ident {
    format_ident!("rn{op}")
}
/// The field of the stand-alone leaky ReLU `op`'s requantisation pair.
pub(super) fn leaky_pair(op: usize) -> Ident {
    format_ident!("lk{op}")
}
/// The field of the head `op`'s output scales.
pub(super) fn output_scale(op: usize) -> Ident {
    format_ident!("os{op}")
}
/// The field of the activation scales.
pub(super) fn act_scales() -> Ident {
    format_ident!("scale")
}
/// The field of the activation zero points.
pub(super) fn zero_points() -> Ident {
    format_ident!("zp")
}

/// `QParams` of activation tensor `t` (0: the input, `i + 1`: op `i`'s output) in the
/// generated int8 code.
pub(super) fn qparams(t: usize) -> TokenStream {
    let (scale, zp, t) = (act_scales(), zero_points(), num(t));
    quote!(QParams { scale: self.#scale[#t], zero_point: self.#zp[#t] })
}

/// The `&QuantArgs` of int8 op `i` (its input's and output's zero points, its
/// requantisation) in the generated code.
pub(super) fn quant_args(i: usize) -> TokenStream {
    let (zp, rp, rn) = (zero_points(), requant_pos(i), requant_neg(i));
    let (input, output) = (num(i), num(i + 1));
    quote!(&QuantArgs {
        input_zero_point: self.#zp[#input],
        requant_pos: self.#rp,
        requant_neg: self.#rn,
        output_zero_point: self.#zp[#output],
    })
}

/// How a field is held by the generated `Model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// Borrowed from the blob in place.
    Slice,
    /// Copied into an array at load (small, read in the inner loops).
    Array,
}

/// One blob tensor the generated code reads: its role, on which path, and its length in
/// blob elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    /// What it is.
    pub role: Role,
    /// The numeric path of the blob.
    pub path: Path,
    /// Elements in the blob (an `I32` pair per `Requant`).
    pub len: usize,
}

impl Field {
    /// The `Model` field's name.
    pub fn ident(&self) -> Ident {
        match self.role {
            Role::Meta => format_ident!("meta"),
            Role::Weights { op } => weights(op),
            Role::Bias { op, .. } => bias(op),
            Role::RequantPos { op } => requant_pos(op),
            Role::RequantNeg { op, .. } => requant_neg(op),
            Role::LeakyPair { op } => leaky_pair(op),
            Role::OutputScale { op } => output_scale(op),
            Role::ActScales => act_scales(),
            Role::ZeroPoints => zero_points(),
        }
    }

    /// The blob element type (`runtime::blob::Elem` variant).
    pub fn elem(&self) -> Ident {
        let int8 = self.path == Path::Int8;
        let e = match self.role {
            Role::Meta | Role::OutputScale { .. } | Role::ActScales => "F32",
            Role::Weights { .. } => match self.path {
                Path::F32 => "F32",
                Path::F16 => "F16",
                Path::Int8 => "I8",
            },
            Role::Bias { .. } if !int8 => "F32",
            Role::Bias { .. }
            | Role::RequantPos { .. }
            | Role::RequantNeg { .. }
            | Role::LeakyPair { .. }
            | Role::ZeroPoints => "I32",
        };
        format_ident!("{e}")
    }

    fn store(&self) -> Store {
        match self.role {
            Role::LeakyPair { .. }
            | Role::OutputScale { .. }
            | Role::ActScales
            | Role::ZeroPoints => Store::Array,
            _ => Store::Slice,
        }
    }

    /// The Rust element type the `Model` holds.
    fn elem_ty(&self) -> TokenStream {
        match self.role {
            Role::Meta | Role::OutputScale { .. } | Role::ActScales => quote!(f32),
            Role::Weights { .. } => match self.path {
                Path::F32 => quote!(f32),
                Path::F16 => quote!(runtime::half::f16),
                Path::Int8 => quote!(i8),
            },
            Role::Bias { .. } if self.path != Path::Int8 => quote!(f32),
            Role::Bias { .. } | Role::ZeroPoints => quote!(i32),
            Role::RequantPos { .. } | Role::RequantNeg { .. } | Role::LeakyPair { .. } => {
                quote!(Requant)
            }
        }
    }

    /// Elements of [`Field::elem_ty`] (a `Requant` is two blob `I32`s).
    fn ty_len(&self) -> usize {
        match self.role {
            Role::RequantPos { .. } | Role::RequantNeg { .. } | Role::LeakyPair { .. } => {
                self.len / 2
            }
            _ => self.len,
        }
    }

    /// The type of the `Model` field.
    fn ty(&self) -> TokenStream {
        if self.role == Role::Meta {
            return quote!(Meta<BANDS, { SCALARS - 1 }>);
        }
        let t = self.elem_ty();
        match self.store() {
            Store::Slice => quote!(&'a [#t]),
            Store::Array => {
                let n = num(self.ty_len());
                quote!([#t; #n])
            }
        }
    }

    /// The `Model` field's declaration, `name: type`.
    pub fn decl(&self) -> TokenStream {
        let (name, ty) = (self.ident(), self.ty());
        quote!(#name: #ty)
    }

    /// The `Blob` getter: float weights and biases are checked finite as they are borrowed.
    fn getter(&self) -> Ident {
        let g = match self.role {
            Role::Meta | Role::OutputScale { .. } | Role::ActScales => "f32",
            Role::Weights { .. } => match self.path {
                Path::F32 => "finite_f32",
                Path::F16 => "finite_f16",
                Path::Int8 => "i8",
            },
            Role::Bias { .. } if self.path != Path::Int8 => "finite_f32",
            Role::Bias { .. } | Role::ZeroPoints => "i32",
            Role::RequantPos { .. } | Role::RequantNeg { .. } | Role::LeakyPair { .. } => "requant",
        };
        format_ident!("{g}")
    }

    /// The code of `Model::new` that reads this field, tensor `k` of `fields` (all of the
    /// blob's, in order), and checks its values.
    pub fn load(&self, k: usize, fields: &[Field]) -> Result<TokenStream> {
        let (name, get, kl) = (self.ident(), self.getter(), num(k));
        let read = match (self.role, self.store()) {
            (Role::Meta, _) => {
                return Ok(
                    quote!(let #name = b.#get(#kl).and_then(Meta::from_slice).ok_or(bad(#kl))?;),
                );
            }
            (_, Store::Slice) => quote!(let #name = b.#get(#kl).ok_or(bad(#kl))?;),
            (_, Store::Array) => {
                let ty = self.ty();
                quote!(let #name: #ty = b.#get(#kl).and_then(|s| s.try_into().ok()).ok_or(bad(#kl))?;)
            }
        };
        let check = match self.role {
            Role::OutputScale { .. } | Role::ActScales => {
                quote!(if #name.iter().any(|s| !(s.is_finite() && *s > 0.0)) { return Err(bad(#kl)); })
            }
            Role::ZeroPoints => {
                quote!(if #name.iter().any(|z| !(-128..=127).contains(z)) { return Err(bad(#kl)); })
            }
            // A stand-alone leaky ReLU: exact for every int8 input.
            Role::LeakyPair { .. } => {
                quote!(if !runtime::quant::leaky_is_exact(#name[0], #name[1]) { return Err(bad(#kl)); })
            }
            Role::RequantPos { .. } => {
                quote!(if !#name.iter().all(|r| r.is_valid()) { return Err(bad(#kl)); })
            }
            // The layer's requantisation read: its accumulators cannot overflow (the error
            // names the bias).
            Role::RequantNeg { op, taps } => {
                let kb = fields
                    .iter()
                    .position(|f| matches!(f.role, Role::Bias { op: o, .. } if o == op))
                    .context("an int8 requantisation without its bias (a codegen bug)")?;
                let (b, rp, taps, kb) = (bias(op), requant_pos(op), num(taps), num(kb));
                quote! {
                    if !#name.iter().all(|r| r.is_valid()) { return Err(bad(#kl)); }
                    if !runtime::quant::layer_is_exact(#b, #taps, #rp, #name) { return Err(bad(#kb)); }
                }
            }
            Role::Bias {
                taps, head: true, ..
            } if self.path == Path::Int8 => {
                let taps = num(taps);
                quote!(if !runtime::quant::head_is_exact(#name, #taps) { return Err(bad(#kl)); })
            }
            Role::Meta | Role::Weights { .. } | Role::Bias { .. } => quote!(),
        };
        Ok(quote!(#read #check))
    }
}

/// The fields of a layer with weights (a convolution or a dense layer) `op` on `path`:
/// `w_len` weights, `units` outputs of `taps` multiply-accumulates each; the head has
/// output scales where a hidden layer has its requantisation.
pub(super) fn layer(
    op: usize,
    w_len: usize,
    units: usize,
    taps: usize,
    head: bool,
    path: Path,
) -> Vec<Field> {
    let field = |role, len| Field { role, path, len };
    let mut f = vec![
        field(Role::Weights { op }, w_len),
        field(Role::Bias { op, taps, head }, units),
    ];
    match path {
        Path::Int8 if head => f.push(field(Role::OutputScale { op }, units)),
        Path::Int8 => {
            f.push(field(Role::RequantPos { op }, 2 * units));
            f.push(field(Role::RequantNeg { op, taps }, 2 * units));
        }
        Path::F32 | Path::F16 => {}
    }
    f
}
