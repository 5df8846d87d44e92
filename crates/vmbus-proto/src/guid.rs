//! GUIDs in the Windows mixed-endian wire layout, and the VMBus device classes.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A GUID as VMBus carries it: `data1` (u32), `data2`, `data3` (u16) little-endian,
/// then `data4` as 8 bytes in text order (Linux `guid_t` / `GUID_INIT`).
#[derive(
    Copy,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
#[repr(C)]
pub struct Guid {
    /// First group (little-endian on the wire).
    pub data1: u32,
    /// Second group (little-endian on the wire).
    pub data2: u16,
    /// Third group (little-endian on the wire).
    pub data3: u16,
    /// Last 8 bytes, in the order they are written.
    pub data4: [u8; 8],
}

const _: () = assert!(size_of::<Guid>() == 16);

/// A string that is not a GUID in `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` form.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID string")]
pub struct GuidParseError;

impl Guid {
    /// The all-zero GUID.
    pub const ZERO: Self = Self {
        data1: 0,
        data2: 0,
        data3: 0,
        data4: [0; 8],
    };

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces, any case.
    // `const fn` cannot use `get()`; every index is below the length checked first
    // (36, or 38 with braces), and the nibble/byte arrays are sized for them.
    #[allow(clippy::indexing_slicing)]
    pub const fn parse(s: &str) -> Result<Self, GuidParseError> {
        let b = s.as_bytes();
        let (start, len) = if b.len() == 38 && b[0] == b'{' && b[37] == b'}' {
            (1, 36)
        } else {
            (0, b.len())
        };
        if len != 36 {
            return Err(GuidParseError);
        }
        let mut nibbles = [0u8; 32];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            let c = b[start + i];
            if i == 8 || i == 13 || i == 18 || i == 23 {
                if c != b'-' {
                    return Err(GuidParseError);
                }
            } else {
                nibbles[n] = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    b'A'..=b'F' => c - b'A' + 10,
                    _ => return Err(GuidParseError),
                };
                n += 1;
            }
            i += 1;
        }
        let mut bytes = [0u8; 16];
        let mut k = 0;
        while k < 16 {
            bytes[k] = nibbles[2 * k] << 4 | nibbles[2 * k + 1];
            k += 1;
        }
        Ok(Self {
            data1: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            data2: u16::from_be_bytes([bytes[4], bytes[5]]),
            data3: u16::from_be_bytes([bytes[6], bytes[7]]),
            data4: [
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14],
                bytes[15],
            ],
        })
    }

    /// Like [`Guid::parse`] for constants; a malformed literal fails compilation when
    /// used in a `const` (and panics otherwise: never call it on peer data).
    #[allow(clippy::panic)]
    pub const fn from_static_str(s: &'static str) -> Self {
        match Self::parse(s) {
            Ok(g) => g,
            Err(_) => panic!("malformed GUID literal"),
        }
    }

    /// The 16 wire bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b.copy_from_slice(self.as_bytes());
        b
    }

    /// From 16 wire bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self::read_from_bytes(&b).unwrap_or(Self::ZERO)
    }
}

impl core::str::FromStr for Guid {
    type Err = GuidParseError;
    fn from_str(s: &str) -> Result<Self, GuidParseError> {
        Self::parse(s)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match device_class_name(self) {
            Some(n) => write!(f, "{{{self}}} ({n})"),
            None => write!(f, "{{{self}}}"),
        }
    }
}

/// Device-class (interface type) GUIDs that Linux's hv_vmbus knows
/// (`include/linux/hyperv.h`).
pub mod class {
    use super::Guid;
    /// Synthetic network adapter (NetVSC/NetVSP).
    pub const NETWORK: Guid = Guid::from_static_str("f8615163-df3e-46c5-913f-f2d2f965ed0e");
    /// IDE accelerator.
    pub const IDE: Guid = Guid::from_static_str("32412632-86cb-44a2-9b5c-50d1417354f5");
    /// Synthetic SCSI (StorVSC).
    pub const SCSI: Guid = Guid::from_static_str("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f");
    /// Shutdown integration component.
    pub const SHUTDOWN: Guid = Guid::from_static_str("0e0b6031-5213-4934-818b-38d90ced39db");
    /// Time synchronization integration component.
    pub const TIME_SYNC: Guid = Guid::from_static_str("9527e630-d0ae-497b-adce-e80ab0175caf");
    /// Heartbeat integration component.
    pub const HEARTBEAT: Guid = Guid::from_static_str("57164f39-9115-4e78-ab55-382f3bd5422d");
    /// Key-value pair exchange.
    pub const KVP: Guid = Guid::from_static_str("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6");
    /// Dynamic memory.
    pub const DYNAMIC_MEMORY: Guid = Guid::from_static_str("525074dc-8985-46e2-8057-a307dc18a502");
    /// Synthetic mouse.
    pub const MOUSE: Guid = Guid::from_static_str("cfa8b69e-5b4a-4cc0-b98b-8ba1a1f3f95a");
    /// Synthetic keyboard.
    pub const KEYBOARD: Guid = Guid::from_static_str("f912ad6d-2b17-48ea-bd65-f927a61c7684");
    /// Volume shadow copy.
    pub const VSS: Guid = Guid::from_static_str("35fa2e29-ea23-4236-96ae-3a6ebacba440");
    /// Synthetic video.
    pub const SYNTHETIC_VIDEO: Guid = Guid::from_static_str("da0a7802-e377-4aac-8e77-0558eb1073f8");
    /// Synthetic Fibre Channel.
    pub const SYNTHETIC_FC: Guid = Guid::from_static_str("2f9bcc4a-0069-4af3-b76b-6fd0be528cda");
    /// Guest file copy.
    pub const FILE_COPY: Guid = Guid::from_static_str("34d14be3-dee4-41c8-9ae7-6b174977c192");
    /// Network Direct.
    pub const NETWORK_DIRECT: Guid = Guid::from_static_str("8c2eaf3d-32a7-4b09-ab99-bd1f1c86b501");
    /// PCI Express pass-through.
    pub const PCIE: Guid = Guid::from_static_str("44c4f61d-4444-4400-9d52-802e27ede19f");
    /// Automatic VM activation 1.
    pub const AVMA1: Guid = Guid::from_static_str("f8e65716-3cb3-4a06-9a60-1889c5cccab5");
    /// Automatic VM activation 2.
    pub const AVMA2: Guid = Guid::from_static_str("3375baf4-9e15-4b30-b765-67acb10d607b");
    /// Remote desktop virtualization.
    pub const RDV: Guid = Guid::from_static_str("276aacf4-ac15-426c-98dd-7521ad3f01fe");
    /// Initial machine configuration.
    pub const IMC: Guid = Guid::from_static_str("c376c1c3-d276-48d2-90a9-c04748072c60");

    /// Every known class with its name.
    pub const ALL: &[(Guid, &str)] = &[
        (NETWORK, "network"),
        (IDE, "ide"),
        (SCSI, "scsi"),
        (SHUTDOWN, "shutdown"),
        (TIME_SYNC, "timesync"),
        (HEARTBEAT, "heartbeat"),
        (KVP, "kvp"),
        (DYNAMIC_MEMORY, "dynamic-memory"),
        (MOUSE, "mouse"),
        (KEYBOARD, "keyboard"),
        (VSS, "vss"),
        (SYNTHETIC_VIDEO, "synthvid"),
        (SYNTHETIC_FC, "synthfc"),
        (FILE_COPY, "fcopy"),
        (NETWORK_DIRECT, "network-direct"),
        (PCIE, "pcie"),
        (AVMA1, "avma1"),
        (AVMA2, "avma2"),
        (RDV, "rdv"),
        (IMC, "imc"),
    ];
}

/// The name of a known device class, if `g` is one.
pub fn device_class_name(g: &Guid) -> Option<&'static str> {
    class::ALL.iter().find(|(c, _)| c == g).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    fn hex(s: &str) -> [u8; 16] {
        let mut b = [0u8; 16];
        for i in 0..16 {
            b[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        b
    }

    #[test]
    fn wire_bytes_match_linux_table() {
        // Wire bytes of the GUIDs in Linux `include/linux/hyperv.h` (the same in FreeBSD's
        // and NetBSD's drivers).
        let table = [
            (class::NETWORK, "635161f83edfc546913ff2d2f965ed0e"),
            (class::IDE, "32264132cb86a2449b5c50d1417354f5"),
            (class::SCSI, "d96361baa104294db60572e2ffb1dc7f"),
            (class::SHUTDOWN, "31600b0e13523449818b38d90ced39db"),
            (class::TIME_SYNC, "30e62795aed07b49adcee80ab0175caf"),
            (class::HEARTBEAT, "394f16571591784eab55382f3bd5422d"),
            (class::KVP, "e7f4a0a9455a964db8278a841e8c03e6"),
            (class::DYNAMIC_MEMORY, "dc7450528589e2468057a307dc18a502"),
            (class::MOUSE, "9eb6a8cf4a5bc04cb98b8ba1a1f3f95a"),
            (class::KEYBOARD, "6dad12f9172bea48bd65f927a61c7684"),
            (class::VSS, "292efa3523ea364296ae3a6ebacba440"),
            (class::SYNTHETIC_VIDEO, "02780ada77e3ac4a8e770558eb1073f8"),
            (class::SYNTHETIC_FC, "4acc9b2f6900f34ab76b6fd0be528cda"),
            (class::FILE_COPY, "e34bd134e4dec8419ae76b174977c192"),
            (class::NETWORK_DIRECT, "3daf2e8ca732094bab99bd1f1c86b501"),
            (class::PCIE, "1df6c444444400449d52802e27ede19f"),
            (class::AVMA1, "1657e6f8b33c064a9a601889c5cccab5"),
            (class::AVMA2, "f4ba7533159e304bb76567acb10d607b"),
            (class::RDV, "f4ac6a2715ac6c4298dd7521ad3f01fe"),
            (class::IMC, "c3c176c376d2d24890a9c04748072c60"),
        ];
        assert_eq!(table.len(), class::ALL.len());
        for (g, wire) in table {
            assert_eq!(g.to_bytes(), hex(wire), "{g}");
            assert_eq!(Guid::from_bytes(hex(wire)), g);
        }
    }

    #[test]
    fn text_roundtrip() {
        let g: Guid = "{F8615163-DF3E-46C5-913F-F2D2F965ED0E}".parse().unwrap();
        assert_eq!(g, class::NETWORK);
        assert_eq!(g.to_string(), "f8615163-df3e-46c5-913f-f2d2f965ed0e");
        assert_eq!(
            std::format!("{g:?}"),
            "{f8615163-df3e-46c5-913f-f2d2f965ed0e} (network)"
        );
        for bad in [
            "",
            "f8615163-df3e-46c5-913f-f2d2f965ed0",
            "f8615163+df3e-46c5-913f-f2d2f965ed0e",
            "g8615163-df3e-46c5-913f-f2d2f965ed0e",
            "{f8615163-df3e-46c5-913f-f2d2f965ed0e",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_parse_roundtrip(b: [u8; 16]) {
            let g = Guid::from_bytes(b);
            proptest::prop_assert_eq!(g.to_string().parse::<Guid>().unwrap(), g);
        }
    }
}
