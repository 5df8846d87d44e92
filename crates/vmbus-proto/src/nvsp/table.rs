//! The send indirection table (message 134, SEND_INDIRECTION_TABLE): parsed at the
//! offset the sender chose, bounded.

use super::*;
use crate::error::{Error, Result, put, read_prefix};
use alloc::vec::Vec;
use zerocopy::IntoBytes;

/// The entries of a SEND_INDIRECTION_TABLE message: for each of up to
/// [`VRSS_SEND_TAB_SIZE`] hash buckets, the channel (0 = primary, n = subchannel n)
/// the guest should send on. Entries are as the host sent them: a guest must check each
/// against the channels it has open.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NvspSendIndirectionTable {
    len: u8,
    entries: [u32; VRSS_SEND_TAB_SIZE],
}

impl NvspSendIndirectionTable {
    /// A table of `entries` (at most [`VRSS_SEND_TAB_SIZE`], else `TooMany`). Linux
    /// accepts only exactly 16 entries.
    pub fn new(entries: &[u32]) -> Result<Self> {
        let mut table = Self {
            len: 0,
            entries: [0; VRSS_SEND_TAB_SIZE],
        };
        if entries.len() > VRSS_SEND_TAB_SIZE {
            return Err(Error::TooMany {
                what: "send indirection table entries",
                count: entries.len() as u64,
                limit: VRSS_SEND_TAB_SIZE as u64,
            });
        }
        for (dst, src) in table.entries.iter_mut().zip(entries) {
            *dst = *src;
        }
        table.len = entries.len() as u8;
        Ok(table)
    }

    /// The round-robin table a host sends for `num_channels` open channels
    /// (entry i = i % num_channels, 16 entries); `num_channels` 0 is treated as 1.
    pub fn round_robin(num_channels: u32) -> Self {
        let n = num_channels.max(1);
        let mut table = Self {
            len: VRSS_SEND_TAB_SIZE as u8,
            entries: [0; VRSS_SEND_TAB_SIZE],
        };
        for (i, e) in table.entries.iter_mut().enumerate() {
            *e = i as u32 % n;
        }
        table
    }

    /// The entries.
    pub fn entries(&self) -> &[u32] {
        self.entries.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Extracts the table from the payload of a SEND_INDIRECTION_TABLE packet: `count`
    /// u32 entries at `offset` bytes from the start of the message (the header).
    ///
    /// Errors: `InvalidField` if the type is not 134 or `offset` points into the header
    /// or the fixed part (< 12); `Truncated` if the fixed part is short; `TooMany` if
    /// `count` exceeds [`VRSS_SEND_TAB_SIZE`]; `OutOfBounds` if the entries do not lie
    /// inside the payload. Count 0 (an empty table) is accepted here; Linux accepts only 16.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        Self::parse_inner(payload, None)
    }

    /// [`NvspSendIndirectionTable::parse`] with Linux's work-around for a Windows host
    /// bug (`netvsc_send_table`, 2019): when the negotiated version is at most 6.0 and the
    /// payload holds at least 40 + 4 * count bytes, the entries are read at offset 40 (right
    /// after a whole `nvsp_message`) whatever `offset` says, because such hosts sent a
    /// too-small offset.
    pub fn parse_linux_compat(payload: &[u8], negotiated: NvspVersion) -> Result<Self> {
        Self::parse_inner(payload, Some(negotiated))
    }

    fn parse_inner(payload: &[u8], linux_fixup: Option<NvspVersion>) -> Result<Self> {
        const WHAT_TABLE: &str = "send indirection table";
        let (hdr, body) = read_prefix::<NvspMessageHeader>("nvsp_message_header", payload)?;
        if hdr.msg_type != NvspMessageType::SEND_INDIRECTION_TABLE {
            return Err(Error::InvalidField {
                what: "send indirection table msg_type",
                value: hdr.msg_type.0.into(),
            });
        }
        let (fixed, _) = read_prefix::<Nvsp5SendIndirectTable>("nvsp_5_send_indirect_table", body)?;
        let count = fixed.count;
        let claimed = fixed.offset;
        if count as usize > VRSS_SEND_TAB_SIZE {
            return Err(Error::TooMany {
                what: "send indirection table entries",
                count: count.into(),
                limit: VRSS_SEND_TAB_SIZE as u64,
            });
        }
        let bytes = count as usize * size_of::<u32>();
        let mut offset = claimed as usize;
        if let Some(v) = linux_fixup {
            let after_message = SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE as usize;
            if v <= NvspVersion::V6 && payload.len() >= after_message + bytes {
                offset = after_message;
            }
        }
        if offset < SEND_INDIRECTION_TABLE_OFFSET as usize {
            return Err(Error::InvalidField {
                what: "send indirection table offset",
                value: claimed.into(),
            });
        }
        let region =
            payload
                .get(offset..)
                .and_then(|r| r.get(..bytes))
                .ok_or(Error::OutOfBounds {
                    what: WHAT_TABLE,
                    offset: offset as u64,
                    len: bytes as u64,
                    bound: payload.len(),
                })?;
        let mut table = Self {
            len: count as u8,
            entries: [0; VRSS_SEND_TAB_SIZE],
        };
        for (dst, chunk) in table
            .entries
            .iter_mut()
            .zip(region.chunks_exact(size_of::<u32>()))
        {
            if let Ok(b) = <[u8; 4]>::try_from(chunk) {
                *dst = u32::from_le_bytes(b);
            }
        }
        Ok(table)
    }

    /// Bytes [`NvspSendIndirectionTable::emit`] writes with this `offset`:
    /// `offset + 4 * len`, at least [`NVSP_MESSAGE_SIZE`].
    pub fn emitted_len(&self, offset: u32) -> usize {
        (offset as usize)
            .saturating_add(size_of_val(self.entries()))
            .max(NVSP_MESSAGE_SIZE)
    }

    /// Writes a whole SEND_INDIRECTION_TABLE message: header (134), `{count, offset}`,
    /// zeros up to `offset`, the entries, and zeros up to 40 bytes if the message is
    /// shorter. Use [`SEND_INDIRECTION_TABLE_OFFSET`] (12, what OpenVMM sends) or
    /// [`SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE`] (40, the Windows layout); both are
    /// read correctly by current Linux at every NVSP version. Pre-2019 kernels read the
    /// offset from byte 4 instead and see neither correctly.
    ///
    /// Errors: `InvalidField` if `offset` is below 12 or above
    /// [`MAX_SEND_INDIRECTION_TABLE_OFFSET`]; `BufferTooSmall`.
    pub fn emit(&self, offset: u32, buf: &mut [u8]) -> Result<usize> {
        const WHAT_EMIT: &str = "send indirection table message";
        if !(SEND_INDIRECTION_TABLE_OFFSET..=MAX_SEND_INDIRECTION_TABLE_OFFSET).contains(&offset) {
            return Err(Error::InvalidField {
                what: "send indirection table offset",
                value: offset.into(),
            });
        }
        let len = self.emitted_len(offset);
        let have = buf.len();
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall {
            what: WHAT_EMIT,
            need: len,
            have,
        })?;
        out.fill(0);
        let hdr = NvspMessageHeader {
            msg_type: NvspMessageType::SEND_INDIRECTION_TABLE,
        };
        let at = put(WHAT_EMIT, out, 0, hdr.as_bytes())?;
        let fixed = Nvsp5SendIndirectTable {
            count: u32::from(self.len),
            offset,
        };
        put(WHAT_EMIT, out, at, fixed.as_bytes())?;
        let mut at = offset as usize;
        for e in self.entries() {
            at = put(WHAT_EMIT, out, at, &e.to_le_bytes())?;
        }
        Ok(len)
    }

    /// [`NvspSendIndirectionTable::emit`] into a new vector.
    pub fn to_vec(&self, offset: u32) -> Result<Vec<u8>> {
        let mut v = alloc::vec![0u8; self.emitted_len(offset)];
        let n = self.emit(offset, &mut v)?;
        v.truncate(n);
        Ok(v)
    }
}
