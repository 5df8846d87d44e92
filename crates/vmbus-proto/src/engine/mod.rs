//! Sans-IO channel-management engines: the VMBus server (host) and client (guest)
//! state machines. Bytes in, actions out; no threads, memory mappings or hypervisor.
//!
//! The runtime (crate `vmbus`) feeds each SynIC message payload to
//! [`server::Server::handle_message`] or [`client::Client::handle_message`], then drains
//! the actions (`poll_action`): messages to post, channels to open or close. Anything
//! the peer gets wrong yields a [`Rejection`] the runtime counts and logs, and where the
//! protocol has an answer (a failed GpadlCreated or OpenResult, a refused version) the
//! engine sends it, so that a well-behaved peer never waits forever.

pub mod client;
pub mod server;

use crate::version::VmbusVersion;

/// The message connection ids a guest posts channel-management messages to
/// (`VMBUS_MESSAGE_CONNECTION_ID` 1, and 4 for InitiateContact at 5.0 and later).
pub const MESSAGE_CONNECTION_IDS: [u32; 2] = [1, 4];
/// `VMBUS_MESSAGE_CONNECTION_ID`.
pub const MESSAGE_CONNECTION_ID: u32 = 1;
/// `VMBUS_MESSAGE_CONNECTION_ID_4`.
pub const MESSAGE_CONNECTION_ID_4: u32 = 4;
/// `VMBUS_MESSAGE_SINT`: the SINT used before 5.0 and by Linux always.
pub const VMBUS_MESSAGE_SINT: u8 = 2;
/// Connection ids of channels are `CHANNEL_CONNECTION_ID_BASE + relid` (24 bits), clear
/// of the message, event and monitor ids 1..=4.
pub const CHANNEL_CONNECTION_ID_BASE: u32 = 0x1_0000;

/// Why an engine dropped or refused a peer's message. The runtime counts these and logs
/// them; where the protocol has a failure answer, the engine already sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The bytes did not parse, or the message is not allowed at this version.
    Malformed(crate::Error),
    /// The message is valid but not in the current state (e.g. OpenChannel before
    /// connecting, a body for an unknown GPADL).
    OutOfState(&'static str),
    /// The message names a channel that does not exist (or not in a usable state).
    UnknownChannel(u32),
    /// A GPADL was refused (duplicate id, page cap, malformed page list).
    GpadlRefused(u32, &'static str),
    /// An OpenChannel was refused.
    OpenRefused(u32, &'static str),
    /// A version the engine does not accept.
    VersionRefused(VmbusVersion),
    /// A message this engine does not implement (e.g. TL connect requests).
    Unsupported(crate::channel::MessageType),
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::OutOfState(what) => write!(f, "out of state: {what}"),
            Self::UnknownChannel(r) => write!(f, "unknown or unusable channel relid {r}"),
            Self::GpadlRefused(g, why) => write!(f, "GPADL {g:#x} refused: {why}"),
            Self::OpenRefused(r, why) => write!(f, "open of relid {r} refused: {why}"),
            Self::VersionRefused(v) => write!(f, "version {v:?} refused"),
            Self::Unsupported(t) => write!(f, "unsupported message {t:?}"),
        }
    }
}

#[cfg(test)]
mod tests;
