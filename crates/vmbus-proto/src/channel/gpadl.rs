//! GPADL page lists: splitting into GpadlHeader/GpadlBody messages and reassembling
//! them with limits.
//!
//! A GPADL ("guest physical address descriptor list") describes guest memory as an
//! array of ranges. On the wire the array is a run of little-endian u64 words: for each
//! range one word `byte_count | byte_offset << 32` (`struct gpa_range`), then one word
//! per page number. The header message carries the total byte length of the array
//! (`range_buflen`), the range count and the first words; body messages carry the rest
//! in order. Linux always sends one range (`rangecount = 1`, `byte_offset = 0`).

use super::message::{
    GPADL_BODY_MAX_WORDS, GPADL_HEADER_MAX_WORDS, GpadlBodyMessage, GpadlHeaderMessage,
};
use super::types::{GpadlBody, GpadlHeader};
use crate::error::{Error, Result};
use alloc::vec::Vec;

/// Page size of page numbers in a GPADL.
pub const GPADL_PAGE_SIZE: u64 = 4096;

/// One range of a GPADL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpaRange {
    /// Bytes described.
    pub byte_count: u32,
    /// Offset of the first byte within the first page (below 4096).
    pub byte_offset: u32,
    /// The guest page numbers, in order.
    pub pfns: Vec<u64>,
}

impl GpaRange {
    /// A range covering whole pages.
    pub fn whole_pages(pfns: Vec<u64>) -> Self {
        let byte_count = (pfns.len() as u64 * GPADL_PAGE_SIZE).min(u64::from(u32::MAX)) as u32;
        Self {
            byte_count,
            byte_offset: 0,
            pfns,
        }
    }

    /// Pages a range of `byte_count` bytes starting at `byte_offset` spans.
    pub const fn pages_for(byte_offset: u32, byte_count: u32) -> u64 {
        (byte_offset as u64 + byte_count as u64).div_ceil(GPADL_PAGE_SIZE)
    }
}

/// Limits on a peer's GPADL.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GpadlLimits {
    /// Maximum words in the range array (range headers plus page numbers). The wire
    /// format itself caps the array at 65535 bytes (u16 `range_buflen`).
    pub max_words: usize,
    /// Maximum number of ranges.
    pub max_ranges: usize,
}

impl Default for GpadlLimits {
    /// Everything a u16 `range_buflen` can describe (8191 words, about 32 MiB of pages),
    /// and at most 64 ranges.
    fn default() -> Self {
        Self {
            max_words: u16::MAX as usize / 8,
            max_ranges: 64,
        }
    }
}

/// Splits `ranges` into one GpadlHeader message and as many GpadlBody messages as
/// needed, numbering bodies from 1. Fails if the array would exceed the 65535-byte
/// `range_buflen` or 65535 ranges.
pub fn split(
    child_relid: u32,
    gpadl: u32,
    ranges: &[GpaRange],
) -> Result<(GpadlHeaderMessage, Vec<GpadlBodyMessage>)> {
    let mut words = Vec::new();
    for r in ranges {
        words.push(u64::from(r.byte_count) | u64::from(r.byte_offset) << 32);
        words.extend_from_slice(&r.pfns);
    }
    let bytes = words.len() * 8;
    let range_buflen = u16::try_from(bytes).map_err(|_| Error::TooMany {
        what: "GPADL range array bytes",
        count: bytes as u64,
        limit: u64::from(u16::MAX),
    })?;
    let range_count = u16::try_from(ranges.len()).map_err(|_| Error::TooMany {
        what: "GPADL ranges",
        count: ranges.len() as u64,
        limit: u64::from(u16::MAX),
    })?;
    let first = words.len().min(GPADL_HEADER_MAX_WORDS);
    let (head_words, rest) = words.split_at(first);
    let header = GpadlHeaderMessage::new(
        GpadlHeader {
            child_relid,
            gpadl,
            range_buflen,
            range_count,
        },
        head_words,
    )
    .ok_or(Error::InvalidField {
        what: "GPADL header words",
        value: first as u64,
    })?;
    let mut bodies = Vec::with_capacity(rest.len().div_ceil(GPADL_BODY_MAX_WORDS));
    for (i, chunk) in rest.chunks(GPADL_BODY_MAX_WORDS).enumerate() {
        let body = GpadlBody {
            msg_number: i as u32 + 1,
            gpadl,
        };
        bodies.push(
            GpadlBodyMessage::new(body, chunk).ok_or(Error::InvalidField {
                what: "GPADL body words",
                value: chunk.len() as u64,
            })?,
        );
    }
    Ok((header, bodies))
}

/// A GPADL being reassembled from a header and body messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpadlAccumulator {
    /// The header's fixed part.
    pub header: GpadlHeader,
    total_words: usize,
    words: Vec<u64>,
}

/// A complete, validated GPADL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpadl {
    /// The channel it was created for.
    pub child_relid: u32,
    /// Its id.
    pub gpadl: u32,
    /// Its ranges.
    pub ranges: Vec<GpaRange>,
}

impl Gpadl {
    /// Total pages over all ranges.
    pub fn page_count(&self) -> usize {
        self.ranges.iter().map(|r| r.pfns.len()).sum()
    }
}

impl GpadlAccumulator {
    /// Starts from a header. Checks `range_buflen` (a non-zero multiple of 8 within
    /// `limits`), the range count (1..=`max_ranges`), and that the header does not
    /// carry more words than announced. Allocates at most `range_buflen` bytes.
    pub fn new(msg: &GpadlHeaderMessage, limits: &GpadlLimits) -> Result<Self> {
        let h = msg.header;
        let buflen = usize::from(h.range_buflen);
        if buflen == 0 || buflen % 8 != 0 {
            return Err(Error::InvalidField {
                what: "GPADL range_buflen",
                value: buflen as u64,
            });
        }
        let total_words = buflen / 8;
        if total_words > limits.max_words {
            return Err(Error::TooMany {
                what: "GPADL words",
                count: total_words as u64,
                limit: limits.max_words as u64,
            });
        }
        let rc = usize::from(h.range_count);
        if rc == 0 || rc > limits.max_ranges {
            return Err(Error::TooMany {
                what: "GPADL ranges",
                count: rc as u64,
                limit: limits.max_ranges as u64,
            });
        }
        if rc * 2 > total_words {
            return Err(Error::InvalidField {
                what: "GPADL range_count",
                value: rc as u64,
            });
        }
        if msg.words().len() > total_words {
            return Err(Error::TooMany {
                what: "GPADL header words",
                count: msg.words().len() as u64,
                limit: total_words as u64,
            });
        }
        let mut words = Vec::with_capacity(total_words);
        words.extend_from_slice(msg.words());
        Ok(Self {
            header: h,
            total_words,
            words,
        })
    }

    /// Whether every announced word has arrived.
    pub fn is_complete(&self) -> bool {
        self.words.len() == self.total_words
    }

    /// Adds a body. Fails if its GPADL id differs or it carries words beyond
    /// `range_buflen`.
    pub fn push_body(&mut self, msg: &GpadlBodyMessage) -> Result<()> {
        if msg.body.gpadl != self.header.gpadl {
            return Err(Error::InvalidField {
                what: "GPADL body id",
                value: u64::from(msg.body.gpadl),
            });
        }
        let w = msg.words();
        if self.words.len() + w.len() > self.total_words {
            return Err(Error::TooMany {
                what: "GPADL body words",
                count: (self.words.len() + w.len()) as u64,
                limit: self.total_words as u64,
            });
        }
        self.words.extend_from_slice(w);
        Ok(())
    }

    /// Validates the complete array and returns the GPADL: every range has a non-zero
    /// byte count, an offset below 4096, exactly the page numbers its size spans, and
    /// the ranges use every word.
    pub fn finish(self) -> Result<Gpadl> {
        if !self.is_complete() {
            return Err(Error::Truncated {
                what: "GPADL words",
                need: self.total_words * 8,
                have: self.words.len() * 8,
            });
        }
        let mut ranges = Vec::with_capacity(usize::from(self.header.range_count));
        let mut rest = self.words.as_slice();
        for _ in 0..self.header.range_count {
            let (&head, after) = rest.split_first().ok_or(Error::Truncated {
                what: "GPADL range",
                need: 8,
                have: 0,
            })?;
            let byte_count = head as u32;
            let byte_offset = (head >> 32) as u32;
            if byte_count == 0 || u64::from(byte_offset) >= GPADL_PAGE_SIZE {
                return Err(Error::InvalidField {
                    what: "GPADL range",
                    value: head,
                });
            }
            let pages = GpaRange::pages_for(byte_offset, byte_count) as usize;
            let (pfns, after) = after.split_at_checked(pages).ok_or(Error::Truncated {
                what: "GPADL range pages",
                need: pages * 8,
                have: after.len() * 8,
            })?;
            ranges.push(GpaRange {
                byte_count,
                byte_offset,
                pfns: pfns.to_vec(),
            });
            rest = after;
        }
        if !rest.is_empty() {
            return Err(Error::InvalidField {
                what: "GPADL trailing words",
                value: rest.len() as u64,
            });
        }
        Ok(Gpadl {
            child_relid: self.header.child_relid,
            gpadl: self.header.gpadl,
            ranges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Message;

    #[test]
    fn linux_sized_ring_gpadl_splits_like_linux() {
        // A netvsc ring GPADL: 2 x 128 pages = 256 pages, one range.
        let pfns: Vec<u64> = (0x1000..0x1100).collect();
        let r = GpaRange::whole_pages(pfns.clone());
        let (h, bodies) = split(7, 0xE1E10, std::slice::from_ref(&r)).unwrap();
        assert_eq!(h.header.range_buflen, 8 + 256 * 8);
        assert_eq!(h.header.range_count, 1);
        // Header: 1 range word + 26 PFNs (linux-guest.md: pfn[<=26]); bodies 28 each.
        assert_eq!(h.words().len(), 27);
        assert_eq!(h.words()[0], 256 * 4096);
        assert_eq!(bodies.len(), (256 - 26usize).div_ceil(28));
        assert!(bodies.iter().all(|b| b.words().len() <= 28));
        assert_eq!(bodies[0].body.msg_number, 1);
        // Every message fits a SynIC payload and round-trips.
        let mut acc = GpadlAccumulator::new(&h, &GpadlLimits::default()).unwrap();
        let (buf, n) = Message::GpadlHeader(h).to_payload();
        assert_eq!(n, 20 + 27 * 8);
        assert_eq!(Message::parse(&buf[..n]).unwrap(), Message::GpadlHeader(h));
        for b in &bodies {
            let (buf, n) = Message::GpadlBody(*b).to_payload();
            assert!(n <= 240);
            assert_eq!(Message::parse(&buf[..n]).unwrap(), Message::GpadlBody(*b));
            acc.push_body(b).unwrap();
        }
        let g = acc.finish().unwrap();
        assert_eq!(g.ranges, vec![r]);
        assert_eq!(g.page_count(), 256);
        assert_eq!((g.child_relid, g.gpadl), (7, 0xE1E10));
    }

    #[test]
    fn multi_range_with_offsets() {
        let ranges = vec![
            GpaRange {
                byte_count: 100,
                byte_offset: 4000,
                pfns: vec![5, 6],
            },
            GpaRange {
                byte_count: 4096,
                byte_offset: 0,
                pfns: vec![9],
            },
        ];
        let (h, bodies) = split(1, 2, &ranges).unwrap();
        assert!(bodies.is_empty());
        let g = GpadlAccumulator::new(&h, &GpadlLimits::default())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(g.ranges, ranges);
    }

    fn header(buflen: u16, count: u16, words: &[u64]) -> GpadlHeaderMessage {
        GpadlHeaderMessage::new(
            GpadlHeader {
                child_relid: 1,
                gpadl: 2,
                range_buflen: buflen,
                range_count: count,
            },
            words,
        )
        .unwrap()
    }

    #[test]
    fn hostile_headers_rejected() {
        let l = GpadlLimits {
            max_words: 100,
            max_ranges: 2,
        };
        for (h, why) in [
            (header(0, 1, &[]), "zero length"),
            (header(12, 1, &[]), "not a multiple of 8"),
            (header(808, 1, &[]), "above max_words"),
            (header(16, 0, &[]), "zero ranges"),
            (header(64, 3, &[]), "above max_ranges"),
            (header(24, 2, &[]), "more ranges than words allow"),
            (header(8, 1, &[1, 2]), "more words than announced"),
        ] {
            assert!(GpadlAccumulator::new(&h, &l).is_err(), "{why}");
        }
    }

    #[test]
    fn inconsistent_arrays_rejected() {
        let l = GpadlLimits::default();
        let fin = |h| GpadlAccumulator::new(&h, &l).unwrap().finish();
        // Range says 2 pages, only 1 PFN follows.
        assert!(fin(header(16, 1, &[8192, 1])).is_err());
        // Range says 1 page but 2 PFNs follow (trailing word).
        assert!(fin(header(24, 1, &[4096, 1, 2])).is_err());
        // byte_offset >= 4096.
        assert!(fin(header(16, 1, &[1 | 4096 << 32, 1])).is_err());
        // byte_count 0.
        assert!(fin(header(16, 1, &[0, 1])).is_err());
        // Incomplete.
        assert!(fin(header(24, 1, &[8192, 1])).is_err());
        // Body for another GPADL, and body overflow.
        let mut acc = GpadlAccumulator::new(&header(24, 1, &[8192, 1]), &l).unwrap();
        let other = GpadlBodyMessage::new(
            GpadlBody {
                msg_number: 1,
                gpadl: 3,
            },
            &[2],
        )
        .unwrap();
        assert!(acc.push_body(&other).is_err());
        let over = GpadlBodyMessage::new(
            GpadlBody {
                msg_number: 1,
                gpadl: 2,
            },
            &[2, 3],
        )
        .unwrap();
        assert!(acc.push_body(&over).is_err());
        let ok = GpadlBodyMessage::new(
            GpadlBody {
                msg_number: 1,
                gpadl: 2,
            },
            &[2],
        )
        .unwrap();
        acc.push_body(&ok).unwrap();
        assert_eq!(acc.finish().unwrap().page_count(), 2);
    }

    #[test]
    fn oversize_split_rejected() {
        let r = GpaRange::whole_pages((0..9000).collect());
        assert!(split(1, 1, &[r]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn split_reassemble_roundtrip(
            specs in proptest::collection::vec((1u32..20000, 0u32..4096), 1..5),
        ) {
            let mut next = 100u64;
            let ranges: Vec<GpaRange> = specs.iter().map(|&(count, off)| {
                let n = GpaRange::pages_for(off, count);
                let pfns = (next..next + n).collect();
                next += n;
                GpaRange { byte_count: count, byte_offset: off, pfns }
            }).collect();
            let (h, bodies) = split(3, 4, &ranges).unwrap();
            let mut acc = GpadlAccumulator::new(&h, &GpadlLimits::default()).unwrap();
            for b in &bodies { acc.push_body(b).unwrap(); }
            proptest::prop_assert_eq!(acc.finish().unwrap().ranges, ranges);
        }
    }
}
