//! The byte stream both ends of a test transfer generate: xorshift64* from a seed, so
//! the receiver checks every byte without the data being stored anywhere. Shared
//! (by `#[path]`) between the guest agent and the host-side test.

/// A deterministic pseudo-random byte stream.
pub struct Pattern {
    state: u64,
    word: u64,
    used: usize,
    /// Bytes produced so far.
    pub offset: u64,
}

impl Pattern {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            word: 0,
            used: 8,
            offset: 0,
        }
    }

    fn next_word(&mut self) {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        self.word = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        self.used = 0;
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            if self.used == 8 {
                self.next_word();
            }
            *b = (self.word >> (8 * self.used)) as u8;
            self.used += 1;
        }
        self.offset += buf.len() as u64;
    }

    /// Checks `buf` against the next bytes; returns the stream offset of the first
    /// mismatch.
    pub fn check(&mut self, buf: &[u8]) -> Result<(), u64> {
        for (i, b) in buf.iter().enumerate() {
            if self.used == 8 {
                self.next_word();
            }
            if *b != (self.word >> (8 * self.used)) as u8 {
                return Err(self.offset + i as u64);
            }
            self.used += 1;
        }
        self.offset += buf.len() as u64;
        Ok(())
    }
}

/// The bytes of flow `flow` of the control-port agents (the guest kernel's hvtest and
/// `hv-guest-agent serve`): byte `off % 8` of the little-endian word
/// `(off / 8 + 1) * 0x9E3779B97F4A7C15 ^ ((flow + 1) << 56)`. No two words of a flow
/// are equal, so a lost, repeated or reordered segment shows; any offset can be made
/// or checked on its own.
pub fn flow_word(word: u64, flow: u32) -> [u8; 8] {
    ((word + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(flow + 1) << 56)).to_le_bytes()
}

/// Fills `buf` with flow `flow`'s bytes from stream offset `off`.
pub fn flow_fill(buf: &mut [u8], off: u64, flow: u32) {
    for (i, b) in buf.iter_mut().enumerate() {
        let o = off + i as u64;
        *b = flow_byte(o, flow);
    }
}

/// Byte `off` of flow `flow`.
pub fn flow_byte(off: u64, flow: u32) -> u8 {
    (u64::from_le_bytes(flow_word(off / 8, flow)) >> (8 * (off % 8))) as u8
}

/// The stream offset of the first byte of `buf` (at stream offset `off`) that is not
/// flow `flow`'s, if any.
pub fn flow_mismatch(buf: &[u8], off: u64, flow: u32) -> Option<u64> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        let o = off + i as u64;
        (b != flow_byte(o, flow)).then_some(o)
    })
}
