//! The one error type of this crate: why a peer's bytes were rejected.

/// Why bytes from the peer could not be parsed, or a value could not be emitted.
///
/// "The peer sent garbage" is the only meaning of this type; empty/full conditions
/// belong to the layers above.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the structure needs.
    #[error("{what}: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A discriminant this crate does not implement (the value is kept).
    #[error("{what}: unknown type {value:#x}")]
    UnknownType {
        /// The kind of discriminant.
        what: &'static str,
        /// The value the peer sent.
        value: u32,
    },
    /// A field holds a value the protocol forbids.
    #[error("{what}: invalid value {value:#x}")]
    InvalidField {
        /// The field.
        what: &'static str,
        /// The value the peer sent.
        value: u64,
    },
    /// An offset/length pair points outside the enclosing message.
    #[error("{what}: range {offset}+{len} outside {bound} bytes")]
    OutOfBounds {
        /// The field pair.
        what: &'static str,
        /// The offset the peer sent.
        offset: u64,
        /// The length the peer sent.
        len: u64,
        /// The size of the enclosing object.
        bound: usize,
    },
    /// A count exceeds a protocol or configured limit.
    #[error("{what}: count {count} exceeds limit {limit}")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// The count the peer sent.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// The message is not allowed at the negotiated protocol version (or without a
    /// negotiated feature).
    #[error("{what} is not allowed at version {version:#x}")]
    NotAllowed {
        /// The message.
        what: &'static str,
        /// The negotiated version.
        version: u32,
    },
    /// The output buffer is too small to emit into.
    #[error("{what}: output buffer of {have} bytes, need {need}")]
    BufferTooSmall {
        /// What was being emitted.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Result alias.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads a zerocopy struct from the front of `bytes`, returning it and the rest.
pub(crate) fn read_prefix<'a, T: zerocopy::FromBytes>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<(T, &'a [u8])> {
    T::read_from_prefix(bytes).map_err(|_| Error::Truncated {
        what,
        need: size_of::<T>(),
        have: bytes.len(),
    })
}

/// Copies `src` into the front of `buf`, or reports the shortfall.
pub(crate) fn put(what: &'static str, buf: &mut [u8], at: usize, src: &[u8]) -> Result<usize> {
    let end = at.checked_add(src.len()).ok_or(Error::BufferTooSmall {
        what,
        need: usize::MAX,
        have: buf.len(),
    })?;
    let have = buf.len();
    let dst = buf.get_mut(at..end).ok_or(Error::BufferTooSmall {
        what,
        need: end,
        have,
    })?;
    dst.copy_from_slice(src);
    Ok(end)
}
