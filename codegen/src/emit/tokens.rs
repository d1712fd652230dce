//! Small token builders shared by the emitters: doc attributes, unsuffixed literals, the
//! names of the generated items.

use anyhow::{Result, ensure};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

/// An unsuffixed integer literal (`6250`, not `6250usize`).
pub(super) fn num(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

/// An integer literal in hexadecimal, `digits` hex digits after the `0x` (`ARCH_HASH`, bit
/// patterns).
pub(super) fn hex(v: u64, digits: usize) -> Literal {
    let lit = syn::LitInt::new(&format!("{v:#0w$x}", w = digits + 2), Span::call_site());
    lit.token()
}

/// A float literal as Rust prints the value (`{:?}`: the shortest text that reads back
/// to the same value, e.g. `200.0`, `0.1`).
pub(super) fn float(v: f64, text: String) -> Result<TokenStream> {
    ensure!(
        v.is_finite(),
        "a non-finite constant {text} in the generated code"
    );
    text.parse()
        .map_err(|e| anyhow::anyhow!("float literal {text}: {e}"))
}

/// An `f32` literal ([`float`]).
pub(super) fn f32_lit(v: f32) -> Result<TokenStream> {
    float(v.into(), format!("{v:?}"))
}

/// `#[doc = " text"]`: prettyplease prints it as the line comment `/// text`.
pub(super) fn doc(text: impl AsRef<str>) -> TokenStream {
    let s = format!(" {}", text.as_ref());
    quote!(#[doc = #s])
}

/// `#![doc = " line"]` per line (`//! line`; an empty line is a bare `//!`).
pub(super) fn inner_docs<S: AsRef<str>>(lines: &[S]) -> TokenStream {
    let lines = lines.iter().map(|l| match l.as_ref() {
        "" => String::new(),
        l => format!(" {l}"),
    });
    quote!(#(#![doc = #lines])*)
}

/// `::<k>`, spaced as `syn` reads `line_len::< 2 >()` when prettyplease prints it inside a
/// macro (`assert!`), where the spacing of the tokens is kept.
pub(super) fn turbofish(k: usize) -> TokenStream {
    use proc_macro2::{Punct, Spacing, TokenTree};
    let punct = |c, spacing| TokenTree::Punct(Punct::new(c, spacing));
    let k = num(k);
    let mut t: TokenStream = [
        punct(':', Spacing::Joint),
        punct(':', Spacing::Joint),
        punct('<', Spacing::Alone),
    ]
    .into_iter()
    .collect();
    t.extend(quote!(#k>));
    t
}

/// `Op{i}`: the kernel type of op `i`.
pub(super) fn op(i: usize) -> Ident {
    format_ident!("Op{i}")
}

/// `Op{i}Window`: the kernel type of op `i` on the streamed window of its input.
pub(super) fn window(i: usize) -> Ident {
    format_ident!("Op{i}Window")
}

/// `SLOPE{i}`: the leaky-ReLU slope constant of op `i`.
pub(super) fn slope(i: usize) -> Ident {
    format_ident!("SLOPE{i}")
}

/// `PoolKind::Max` / `PoolKind::Avg` in the generated code.
pub(super) fn pool_enum(kind: crate::arch::PoolKind) -> TokenStream {
    match kind {
        crate::arch::PoolKind::Max => quote!(PoolKind::Max),
        crate::arch::PoolKind::Avg => quote!(PoolKind::Avg),
    }
}

/// `max` / `avg`: the prefix of a pooling kernel's method names.
pub(super) fn pool_kind(kind: crate::arch::PoolKind) -> &'static str {
    match kind {
        crate::arch::PoolKind::Max => "max",
        crate::arch::PoolKind::Avg => "avg",
    }
}
