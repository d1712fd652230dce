//! The runtime's error type: small, `Copy`, printable without allocation.

use core::fmt;

/// Everything that can go wrong inside the runtime.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A buffer had a different length than the kernel needs.
    BadLength {
        /// Length the kernel requires.
        expected: usize,
        /// Length it was given.
        got: usize,
    },
    /// A scalar input (e.g. the redshift) was NaN, infinite or out of range.
    BadScalar,
    /// The redshift is finite but outside the range the model was trained on (recorded in
    /// its weight blob, [`Meta::z_range`](crate::model::Meta::z_range)): the network would
    /// extrapolate, so no estimate is given.
    RedshiftOutOfRange,
    /// The network produced a non-finite output (a blob whose values overflow the
    /// arithmetic); no estimate is given.
    NonFinite,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadLength { expected, got } => {
                write!(f, "buffer length {got}, expected {expected}")
            }
            Error::BadScalar => f.write_str("scalar input is not finite or out of range"),
            Error::RedshiftOutOfRange => {
                f.write_str("redshift outside the range the model was trained on")
            }
            Error::NonFinite => f.write_str("the network produced a non-finite output"),
        }
    }
}

/// The runtime's errors are ordinary `core::error::Error`s (no_std, no allocation), so
/// host code can `?` them into `anyhow` or `Box<dyn Error>`.
impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::Error;
    use crate::blob::BlobError;

    /// Both error types coerce to `&dyn core::error::Error` and keep their messages.
    #[test]
    fn errors_are_core_errors() {
        let e: &dyn core::error::Error = &Error::RedshiftOutOfRange;
        let b: &dyn core::error::Error = &BlobError::Checksum;
        let mut s = heapless::String::<128>::new();
        core::fmt::write(&mut s, format_args!("{e}; {b}")).unwrap();
        assert_eq!(
            s.as_str(),
            "redshift outside the range the model was trained on; weight blob checksum mismatch (corrupted)"
        );
        assert!(e.source().is_none() && b.source().is_none());
    }
}
