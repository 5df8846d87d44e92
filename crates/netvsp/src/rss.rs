//! Receive-side scaling: the Toeplitz hash of a received frame's addresses and ports
//! with the guest's key, and the guest's indirection table from hash to queue
//! (OID_GEN_RECEIVE_SCALE_PARAMETERS). Also the send indirection table the host gives
//! the guest (NVSP 5 SEND_INDIRECTION_TABLE) for choosing its transmit queue.

use vmbus_proto::rndis::{RssHashInfo, RssParamFlags, RssParams};

/// Entries of the send indirection table (`VRSS_SEND_TAB_SIZE`).
pub const SEND_TABLE_SIZE: usize = 16;

/// Toeplitz hash of `input` with `key` (NDIS "RSS hashing functions"): for every set
/// bit of the input, XOR in the 32 key bits starting at that bit position. Key bits
/// past the key's end read as zero.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| key.get(i).copied().unwrap_or(0);
    let mut result = 0u32;
    // The 32-bit key window for the current input bit, and the next key byte to shift in.
    let mut window = u32::from_be_bytes([key_byte(0), key_byte(1), key_byte(2), key_byte(3)]);
    for (i, &byte) in input.iter().enumerate() {
        let next = key_byte(i + 4);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    result
}

/// Longest hash input (IPv6 addresses and TCP ports).
const MAX_INPUT: usize = 36;

/// [`toeplitz`] for one key as lookups: entry `[i][v]` is the hash of input byte `i`
/// having value `v` (the hash is linear in the input, so a frame's hash is the XOR
/// of its bytes' entries). 36 KiB, built when the guest sets the key.
#[derive(Clone, PartialEq, Eq)]
struct ToeplitzTable(Vec<[u32; 256]>);

impl ToeplitzTable {
    fn new(key: &[u8]) -> Self {
        let mut t = vec![[0u32; 256]; MAX_INPUT];
        let mut one = [0u8; MAX_INPUT];
        for (i, row) in t.iter_mut().enumerate() {
            // The contribution of each single bit, then every byte value as their XOR.
            let mut bits = [0u32; 8];
            for (b, h) in bits.iter_mut().enumerate() {
                if let Some(x) = one.get_mut(i) {
                    *x = 0x80 >> b;
                }
                *h = toeplitz(key, one.get(..=i).unwrap_or(&[]));
                if let Some(x) = one.get_mut(i) {
                    *x = 0;
                }
            }
            for (v, h) in row.iter_mut().enumerate() {
                *h = bits
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| v & (0x80 >> b) != 0)
                    .fold(0, |acc, (_, x)| acc ^ x);
            }
        }
        Self(t)
    }

    fn hash(&self, input: &[u8]) -> u32 {
        input.iter().zip(&self.0).fold(0, |h, (&v, row)| {
            h ^ row.get(usize::from(v)).copied().unwrap_or(0)
        })
    }
}

impl std::fmt::Debug for ToeplitzTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToeplitzTable")
    }
}

/// The guest's RSS configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rss {
    key: [u8; 40],
    key_len: usize,
    lookup: ToeplitzTable,
    /// Queue per entry; the entry is `hash % table.len()`.
    table: Vec<u16>,
    hash: RssHashInfo,
}

/// Why an RSS parameter set was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RssError {
    /// An indirection-table entry names a queue the NIC does not have.
    #[error("indirection entry {entry} names queue {queue} of {queues}")]
    BadQueue {
        /// Entry index.
        entry: usize,
        /// The queue named.
        queue: u32,
        /// Queues available.
        queues: u16,
    },
    /// A hash function other than Toeplitz, or an empty table or key.
    #[error("unsupported RSS parameters: {0}")]
    Unsupported(&'static str),
}

impl Rss {
    /// Applies OID_GEN_RECEIVE_SCALE_PARAMETERS to `current` for a NIC with `queues`
    /// queues. Returns the new configuration (`None`: RSS off).
    pub fn apply(
        current: Option<&Rss>,
        p: &RssParams<'_>,
        queues: u16,
    ) -> Result<Option<Rss>, RssError> {
        let flags = p.flags();
        if flags.contains(RssParamFlags::DISABLE_RSS) {
            return Ok(None);
        }
        let mut rss = current.cloned().unwrap_or(Rss {
            key: [0; 40],
            key_len: 0,
            lookup: ToeplitzTable(Vec::new()),
            table: Vec::new(),
            hash: RssHashInfo::empty(),
        });
        if !flags.contains(RssParamFlags::HASH_INFO_UNCHANGED) {
            let h = p.hash_info();
            if h.bits() & RssHashInfo::FUNCTION_MASK != RssHashInfo::FUNC_TOEPLITZ.bits() {
                return Err(RssError::Unsupported("hash function"));
            }
            rss.hash = h;
        }
        if !flags.contains(RssParamFlags::HASH_KEY_UNCHANGED) {
            let n = p.hash_key.len().min(rss.key.len());
            rss.key = [0; 40];
            if let (Some(d), Some(s)) = (rss.key.get_mut(..n), p.hash_key.get(..n)) {
                d.copy_from_slice(s);
            }
            rss.key_len = n;
            rss.lookup = ToeplitzTable::new(rss.key.get(..n).unwrap_or(&[]));
        }
        if !flags.contains(RssParamFlags::ITABLE_UNCHANGED) {
            let mut table = Vec::with_capacity(p.indirection_table.len() / 4);
            for (entry, queue) in p.indirection_entries().enumerate() {
                if queue >= u32::from(queues) {
                    return Err(RssError::BadQueue {
                        entry,
                        queue,
                        queues,
                    });
                }
                table.push(queue as u16);
            }
            rss.table = table;
        }
        if rss.table.is_empty() || rss.key_len == 0 {
            return Err(RssError::Unsupported("empty indirection table or key"));
        }
        Ok(Some(rss))
    }

    /// The queue the indirection table names for `hash`.
    pub fn queue_of(&self, hash: u32) -> u16 {
        self.table
            .get(hash as usize % self.table.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    /// The hash of `frame` (untagged Ethernet) and the queue its table entry names, or
    /// `None` when no enabled hash type applies (the frame goes to queue 0 unhashed).
    pub fn classify(&self, frame: &[u8]) -> Option<(u32, u16)> {
        let mut input = [0u8; MAX_INPUT];
        let n = hash_input(frame, self.hash, &mut input)?;
        let hash = self.lookup.hash(input.get(..n)?);
        let queue = *self.table.get(hash as usize % self.table.len().max(1))?;
        Some((hash, queue))
    }
}

/// Fills `out` with the hash input of `frame` for the enabled types: source address,
/// destination address, then (TCP) source and destination port. Returns its length.
fn hash_input(frame: &[u8], hash: RssHashInfo, out: &mut [u8; 36]) -> Option<usize> {
    let ethertype = frame.get(12..14)?;
    let copy = |out: &mut [u8; 36], at: usize, src: &[u8]| -> Option<usize> {
        out.get_mut(at..at + src.len())?.copy_from_slice(src);
        Some(at + src.len())
    };
    match ethertype {
        [0x08, 0x00] if hash.intersects(RssHashInfo::IPV4 | RssHashInfo::TCP_IPV4) => {
            let ip = frame.get(14..)?;
            let ihl = usize::from(ip.first()? & 0xf) * 4;
            // More-fragments or a fragment offset: no ports to hash.
            let fragment = ip
                .get(6..)
                .and_then(|f| f.first_chunk::<2>())
                .is_some_and(|f| u16::from_be_bytes(*f) & 0x3fff != 0);
            let n = copy(out, 0, ip.get(12..20)?)?;
            if hash.contains(RssHashInfo::TCP_IPV4)
                && *ip.get(9)? == 6
                && !fragment
                && let Some(ports) = ip.get(ihl..ihl + 4)
            {
                return copy(out, n, ports);
            }
            hash.contains(RssHashInfo::IPV4).then_some(n)
        }
        [0x86, 0xdd] if hash.intersects(RssHashInfo::IPV6 | RssHashInfo::TCP_IPV6) => {
            let ip = frame.get(14..)?;
            let n = copy(out, 0, ip.get(8..40)?)?;
            if hash.contains(RssHashInfo::TCP_IPV6)
                && *ip.get(6)? == 6
                && let Some(ports) = ip.get(40..44)
            {
                return copy(out, n, ports);
            }
            hash.contains(RssHashInfo::IPV6).then_some(n)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of Microsoft's "Verifying the RSS hash calculation" examples.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    fn input4(src: [u8; 4], dst: [u8; 4], ports: Option<(u16, u16)>) -> Vec<u8> {
        let mut v = src.to_vec();
        v.extend_from_slice(&dst);
        if let Some((s, d)) = ports {
            v.extend_from_slice(&s.to_be_bytes());
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn toeplitz_matches_the_published_ipv4_examples() {
        // (source, destination, IPv4 hash, TCP/IPv4 hash) from Microsoft's RSS
        // verification table.
        let cases = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x323e_8fc2u32,
                0x51cc_c178u32,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                [24, 19, 198, 95],
                12898,
                [12, 22, 207, 184],
                38024,
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                [38, 27, 205, 30],
                48228,
                [209, 142, 163, 6],
                2217,
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ];
        for (src, sport, dst, dport, ip, tcp) in cases {
            assert_eq!(toeplitz(&MS_KEY, &input4(src, dst, None)), ip, "{src:?}");
            assert_eq!(
                toeplitz(&MS_KEY, &input4(src, dst, Some((sport, dport)))),
                tcp,
                "{src:?} tcp"
            );
        }
    }

    #[test]
    fn lookup_table_equals_the_bitwise_hash() {
        let t = ToeplitzTable::new(&MS_KEY);
        let mut x = 0x1234_5678u32;
        for len in 0..=MAX_INPUT {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(t.hash(&input), toeplitz(&MS_KEY, &input), "{input:?}");
        }
    }

    #[test]
    fn classify_uses_the_enabled_hash_types() {
        let rss = Rss {
            key: MS_KEY,
            key_len: 40,
            lookup: ToeplitzTable::new(&MS_KEY),
            table: (0..128).map(|i| (i % 4) as u16).collect(),
            hash: RssHashInfo::FUNC_TOEPLITZ | RssHashInfo::IPV4 | RssHashInfo::TCP_IPV4,
        };
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[66, 9, 149, 187, 161, 142, 100, 80]);
        f.extend_from_slice(&2794u16.to_be_bytes());
        f.extend_from_slice(&1766u16.to_be_bytes());
        f.extend_from_slice(&[0; 16]);
        assert_eq!(
            rss.classify(&f),
            Some((0x51cc_c178, (0x51cc_c178u32 % 128 % 4) as u16))
        );
        // UDP: addresses only.
        f[23] = 17;
        assert_eq!(rss.classify(&f).map(|c| c.0), Some(0x323e_8fc2));
        // Not IP: unhashed.
        f[12] = 0x88;
        assert_eq!(rss.classify(&f), None);
        assert_eq!(rss.classify(&[0u8; 10]), None);
    }
}
