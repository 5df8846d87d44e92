//! `HV_STATUS`: the 16-bit result of a hypercall.

crate::open_enum! {
    /// A hypercall status code (TLFS "Hypercall Status Codes"; Linux
    /// `include/hyperv/hvgdk_mini.h` `HV_STATUS_*`).
    ///
    /// Open: a guest or hypervisor may report a code this crate does not name.
    pub struct HvStatus(u16) {
        /// The call succeeded.
        SUCCESS = 0x0000,
        /// The call code is not defined or not available to the caller.
        INVALID_HYPERCALL_CODE = 0x0002,
        /// Reserved bits are set, a rep count was given to a simple call, or the call
        /// used the fast convention where it may not.
        INVALID_HYPERCALL_INPUT = 0x0003,
        /// An input or output block is not 8-byte aligned or crosses a page boundary.
        INVALID_ALIGNMENT = 0x0004,
        /// A parameter is out of range (payload size above 240, reserved message type,
        /// flag number beyond the event-flag count).
        INVALID_PARAMETER = 0x0005,
        /// The caller lacks the privilege for the call.
        ACCESS_DENIED = 0x0006,
        /// The partition is not in a state that allows the call.
        INVALID_PARTITION_STATE = 0x0007,
        /// The operation is not allowed now.
        OPERATION_DENIED = 0x0008,
        /// Unknown partition property.
        UNKNOWN_PROPERTY = 0x0009,
        /// Property value out of range.
        PROPERTY_VALUE_OUT_OF_RANGE = 0x000A,
        /// Not enough memory for the operation.
        INSUFFICIENT_MEMORY = 0x000B,
        /// Invalid partition id.
        INVALID_PARTITION_ID = 0x000D,
        /// Invalid virtual processor index.
        INVALID_VP_INDEX = 0x000E,
        /// Object not found.
        NOT_FOUND = 0x0010,
        /// Invalid port id.
        INVALID_PORT_ID = 0x0011,
        /// No port is connected under this connection id. For VMBus InitiateContact on
        /// connection 4 a Linux guest reads this as "host older than 5.0".
        INVALID_CONNECTION_ID = 0x0012,
        /// The destination message queue is full; the guest retries.
        INSUFFICIENT_BUFFERS = 0x0013,
        /// The message was not acknowledged.
        NOT_ACKNOWLEDGED = 0x0014,
        /// The VP is in the wrong state.
        INVALID_VP_STATE = 0x0015,
        /// The object is in use; HvPostMessageDirect returns it when the target SIMP slot
        /// is still occupied.
        OBJECT_IN_USE = 0x0019,
        /// No resources.
        NO_RESOURCES = 0x001D,
        /// A processor feature is not supported.
        PROCESSOR_FEATURE_NOT_SUPPORTED = 0x0020,
        /// Invalid logical processor index.
        INVALID_LP_INDEX = 0x0041,
        /// Invalid register value.
        INVALID_REGISTER_VALUE = 0x0050,
        /// The operation failed.
        OPERATION_FAILED = 0x0071,
        /// Time out.
        TIME_OUT = 0x0078,
        /// The call is pending.
        CALL_PENDING = 0x0079,
        /// The VTL is already enabled.
        VTL_ALREADY_ENABLED = 0x0086,
    }
}

impl HvStatus {
    /// Whether the status is `SUCCESS`.
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }
}

/// A non-success status is an error a caller may propagate.
impl core::error::Error for HvStatus {}
