//! The `open_enum!` macro: on-wire discriminants that keep unknown values.

/// Declares an "open" enum: a `#[repr(transparent)]` newtype over an integer with
/// named associated constants.
///
/// Unlike a Rust `enum`, every bit pattern the peer may send is representable, so a
/// parser never has to reject (or worse, transmute) an unknown discriminant: it keeps the
/// raw value and the caller decides. `name()` returns the protocol name of a known value,
/// and `Debug` prints either that name or the raw number in hex.
///
/// Invoke it at module level (not inside a function body). The crate using it needs
/// no dependency on zerocopy: the derives reach it through this crate.
///
/// ```
/// hv_hypercall::open_enum! {
///     /// Example.
///     pub struct Colour(u8) {
///         /// Red.
///         RED = 1,
///     }
/// }
///
/// fn main() {
///     assert_eq!(Colour(1), Colour::RED);
///     assert_eq!(Colour(7).name(), None);
///     assert_eq!(format!("{:?}", Colour::RED), "RED");
///     assert_eq!(format!("{:?}", Colour(7)), "Colour(0x7)");
/// }
/// ```
#[macro_export]
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($ty:ty) {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:expr,
            )*
        }
    ) => {
        // The zerocopy derives name their crate by a path: this glob import gives the
        // invoking module one that needs no zerocopy dependency of its own (a glob
        // import may repeat, unlike a named one).
        #[allow(unused_imports)]
        use $crate::__private::*;

        $(#[$meta])*
        #[derive(
            Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
            $crate::__private::__hv_zerocopy::FromBytes,
            $crate::__private::__hv_zerocopy::IntoBytes,
            $crate::__private::__hv_zerocopy::Immutable,
            $crate::__private::__hv_zerocopy::KnownLayout,
        )]
        #[zerocopy(crate = "self::__hv_zerocopy")]
        #[repr(transparent)]
        $vis struct $name(pub $ty);

        #[allow(missing_docs)]
        impl $name {
            $(
                $(#[$vmeta])*
                pub const $variant: Self = Self($value);
            )*

            /// Every named value, in declaration order.
            pub const KNOWN: &'static [Self] = &[$(Self::$variant),*];

            /// The protocol name of this value, or `None` if the value is not one the
            /// protocol defines (the peer sent something unknown).
            pub const fn name(self) -> Option<&'static str> {
                $(
                    if self.0 == $value {
                        return Some(stringify!($variant));
                    }
                )*
                None
            }

            /// Whether the value is one of the named constants.
            pub const fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, concat!(stringify!($name), "({:#x})"), self.0),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(self, f)
            }
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                v.0
            }
        }
    };
}
