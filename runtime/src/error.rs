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
    /// A scalar input was not physically valid: NaN, infinite, a negative redshift or one
    /// above [`MAX_REDSHIFT`](crate::model::MAX_REDSHIFT), a zero, negative or absurd
    /// exposure. (Values that are valid but outside the training range give a flagged
    /// estimate instead, [`Flags`](crate::model::Flags).)
    BadScalar {
        /// Which scalar input (0 the redshift, then the model's auxiliary inputs in order).
        index: usize,
    },
    /// The network produced a non-finite output (a blob whose values overflow the
    /// arithmetic); no estimate is given.
    NonFinite,
    /// An event given to the [`Binner`](crate::events::Binner) has a NaN or infinite
    /// coordinate or energy; it was not binned.
    BadEvent {
        /// The first value of the event that is not finite.
        field: crate::events::EventField,
    },
    /// Band edges that are not finite and strictly increasing, or fewer than two.
    BadBandEdges,
    /// An int8 input zero point outside [-128, 127]: a streamed convolution cannot pad its
    /// input window with it ([`Conv2d::s8_pooled_streamed`](crate::kernels::conv2d::Conv2d::s8_pooled_streamed)).
    BadZeroPoint {
        /// The zero point given.
        got: i32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadLength { expected, got } => {
                write!(f, "buffer length {got}, expected {expected}")
            }
            Error::BadScalar { index: 0 } => {
                f.write_str("scalar input 0 (the redshift) is not finite or not in [0, 20]")
            }
            Error::BadScalar { index } => write!(
                f,
                "scalar input {index} is not finite or not physically valid (an exposure must lie in (0, 1e9] s)"
            ),
            Error::NonFinite => f.write_str("the network produced a non-finite output"),
            Error::BadEvent { field } => write!(
                f,
                "event {} is not finite (NaN or infinite); the event was not binned",
                field.name()
            ),
            Error::BadBandEdges => {
                f.write_str("band edges must be finite and strictly increasing, at least two")
            }
            Error::BadZeroPoint { got } => {
                write!(f, "int8 input zero point {got} is not in [-128, 127]")
            }
        }
    }
}

/// The same messages as [`Display`](fmt::Display), for a firmware's defmt log (the text stays
/// on the host, in the ELF's defmt table; the device sends the values).
#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Error::BadLength { expected, got } => {
                defmt::write!(
                    f,
                    "buffer length {=usize}, expected {=usize}",
                    got,
                    expected
                )
            }
            Error::BadScalar { index: 0 } => defmt::write!(
                f,
                "scalar input 0 (the redshift) is not finite or not in [0, 20]"
            ),
            Error::BadScalar { index } => defmt::write!(
                f,
                "scalar input {=usize} is not finite or not physically valid (an exposure must lie in (0, 1e9] s)",
                index
            ),
            Error::NonFinite => defmt::write!(f, "the network produced a non-finite output"),
            Error::BadEvent { field } => defmt::write!(
                f,
                "event {} is not finite (NaN or infinite); the event was not binned",
                field
            ),
            Error::BadBandEdges => defmt::write!(
                f,
                "band edges must be finite and strictly increasing, at least two"
            ),
            Error::BadZeroPoint { got } => {
                defmt::write!(f, "int8 input zero point {=i32} is not in [-128, 127]", got)
            }
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
        let e: &dyn core::error::Error = &Error::BadScalar { index: 1 };
        let b: &dyn core::error::Error = &BlobError::Checksum;
        let mut s = heapless::String::<256>::new();
        core::fmt::write(&mut s, format_args!("{e}; {b}")).unwrap();
        assert_eq!(
            s.as_str(),
            "scalar input 1 is not finite or not physically valid (an exposure must lie in (0, 1e9] s); weight blob checksum mismatch (corrupted)"
        );
        assert!(e.source().is_none() && b.source().is_none());
    }
}
