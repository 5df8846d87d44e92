//! VMBus protocol versions and the 6.0 feature flags.

use bitflags::bitflags;

hv_hypercall::open_enum! {
    /// A VMBus protocol version, `major << 16 | minor` (Linux `VERSION_*`,
    /// `include/linux/hyperv.h`). Open: a guest may request anything.
    pub struct VmbusVersion(u32) {
        /// 0.13, Windows Server 2008 (`VERSION_WS2008`).
        V0_13 = 0x0000_000D,
        /// 1.1, Windows 7 (`VERSION_WIN7`).
        V1_1 = 0x0001_0001,
        /// 2.4, Windows 8 (`VERSION_WIN8`).
        V2_4 = 0x0002_0004,
        /// 3.0, Windows 8.1 (`VERSION_WIN8_1`).
        V3_0 = 0x0003_0000,
        /// 4.0, Windows 10 (`VERSION_WIN10`).
        V4_0 = 0x0004_0000,
        /// 4.1, Windows 10 RS3 (`VERSION_WIN10_V4_1`).
        V4_1 = 0x0004_0001,
        /// 5.0 (`VERSION_WIN10_V5`): first to use message connection id 4 and `msg_sint`.
        V5_0 = 0x0005_0000,
        /// 5.1, RS4 (`VERSION_WIN10_V5_1`).
        V5_1 = 0x0005_0001,
        /// 5.2, RS5 / WS2019 (`VERSION_WIN10_V5_2`).
        V5_2 = 0x0005_0002,
        /// 5.3, WS2022 (`VERSION_WIN10_V5_3`).
        V5_3 = 0x0005_0003,
        /// 6.0 (`VERSION_WIN10_V6_0`, OpenVMM "Copper"): feature flags in InitiateContact
        /// and VersionResponse.
        V6_0 = 0x0006_0000,
    }
}

impl VmbusVersion {
    /// Every version this crate can parse messages for, oldest first.
    pub const ALL: [Self; 11] = [
        Self::V0_13,
        Self::V1_1,
        Self::V2_4,
        Self::V3_0,
        Self::V4_0,
        Self::V4_1,
        Self::V5_0,
        Self::V5_1,
        Self::V5_2,
        Self::V5_3,
        Self::V6_0,
    ];

    /// The versions a current Linux guest tries, newest first (Debian 6.1
    /// `vmbus_versions[]` in `drivers/hv/connection.c`).
    pub const LINUX_GUEST_ORDER: [Self; 8] = [
        Self::V5_3,
        Self::V5_2,
        Self::V5_1,
        Self::V5_0,
        Self::V4_1,
        Self::V4_0,
        Self::V3_0,
        Self::V2_4,
    ];

    /// `major << 16 | minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self((major as u32) << 16 | minor as u32)
    }
    /// The major number.
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// The minor number.
    pub const fn minor(self) -> u16 {
        self.0 as u16
    }
    /// Whether InitiateContact for this version goes to connection id 4 and carries
    /// `msg_sint` instead of an interrupt page (5.0 and later).
    pub const fn uses_message_sint(self) -> bool {
        self.0 >= Self::V5_0.0
    }
    /// Whether VersionResponse carries `msg_conn_id` (16-byte form, 5.0 and later).
    pub const fn has_msg_conn_id(self) -> bool {
        self.0 >= Self::V5_0.0
    }
    /// Whether the version carries feature flags (6.0 and later).
    pub const fn has_feature_flags(self) -> bool {
        self.0 >= Self::V6_0.0
    }
}

bitflags! {
    /// VMBus 6.0 feature flags (InitiateContact `feature_flags`, VersionResponse2
    /// `supported_features`). Values from Linux `VMBUS_FEATURE_FLAG_*` and OpenVMM
    /// `vmbus_core::protocol::FeatureFlags`; 0x20 and 0x40 from Microsoft's published
    /// firmware headers (Mile.HyperV).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FeatureFlags: u32 {
        /// The guest chooses each channel's connection id and event flag (OpenChannel2).
        const GUEST_SPECIFIED_SIGNAL_PARAMETERS = 0x01;
        /// Channel interrupts may be redirected (OpenChannel2 flags).
        const CHANNEL_INTERRUPT_REDIRECTION = 0x02;
        /// ModifyConnection messages (types 25/26).
        const MODIFY_CONNECTION = 0x04;
        /// InitiateContact2 carries a client id.
        const CLIENT_ID = 0x08;
        /// Confidential channels (`VMBUS_FEATURE_FLAG_CONFIDENTIAL_CHANNELS`).
        const CONFIDENTIAL_CHANNELS = 0x10;
        /// Pause/PauseResponse/Resume (types 27..29).
        const PAUSE_RESUME = 0x20;
        /// The server chooses the monitor pages (VersionResponse3).
        const SERVER_SPECIFIED_MONITOR_PAGES = 0x40;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_linux() {
        assert_eq!(VmbusVersion::V2_4.0, 0x0002_0004);
        assert_eq!(VmbusVersion::V5_3.0, 0x0005_0003);
        assert_eq!(VmbusVersion::new(5, 3), VmbusVersion::V5_3);
        assert_eq!(VmbusVersion::V4_1.major(), 4);
        assert_eq!(VmbusVersion::V4_1.minor(), 1);
        assert!(VmbusVersion::V5_0.uses_message_sint());
        assert!(!VmbusVersion::V4_1.uses_message_sint());
        assert!(VmbusVersion::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(VmbusVersion(0x0007_0000).name(), None);
    }
}
