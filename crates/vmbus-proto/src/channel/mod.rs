//! VMBus channel-management messages (the SynIC payloads exchanged on the message
//! connection) and GPADL page lists.
//!
//! [`Message::parse`] is total over arbitrary bytes; [`Message::parse_for`] also applies
//! the version and feature gate; [`Message::emit`] writes the exact wire bytes.

pub mod gpadl;
mod message;
pub mod types;

pub use message::{
    GPADL_BODY_MAX_WORDS, GPADL_HEADER_MAX_WORDS, Gate, GpadlBodyMessage, GpadlHeaderMessage,
    Message, VersionResponseMessage,
};
pub use types::*;

#[cfg(test)]
mod tests;
