//! `open_enum!` in a crate that does not depend on zerocopy (this one does not): its
//! expansion reaches the zerocopy derives through hv-hypercall.

hv_hypercall::open_enum! {
    /// A wire discriminant.
    pub struct Kind(u16) {
        /// One.
        ONE = 1,
        /// Two.
        TWO = 2,
    }
}

hv_hypercall::open_enum! {
    /// A second one in the same module (the macro's import may repeat).
    pub struct Other(u32) {
        /// Seven.
        SEVEN = 7,
    }
}

#[test]
fn open_enums_expand_without_a_zerocopy_dependency() {
    assert_eq!(Kind(2), Kind::TWO);
    assert_eq!(Kind(9).name(), None);
    assert_eq!(format!("{:?}", Other(7)), "SEVEN");
    assert_eq!(u16::from(Kind::ONE), 1);
}
