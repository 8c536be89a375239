//! Hex digits, the one way orbhash writes bytes for people: model ids, mission keys, codes in
//! query results and on the command line. Lowercase on output; either case on input; no
//! separators and no `0x`.

use core::fmt;

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Exactly `2 * N` hex digits as `N` bytes; `None` for anything else.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    decode_into(text, &mut bytes)?;
    Some(bytes)
}

/// Exactly `2 * out.len()` hex digits into `out`; `None` (and `out` unspecified) otherwise.
pub fn decode_into(text: &str, out: &mut [u8]) -> Option<()> {
    let digits = text.as_bytes();
    if digits.len() != 2 * out.len() {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *slot = nibble(*high)? << 4 | nibble(*low)?;
    }
    Some(())
}

/// Writes `bytes` as lowercase hex, for `Display` impls.
pub fn write(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

/// Any number of whole bytes as hex digits; `None` on an odd length or a non-hex digit.
#[cfg(feature = "std")]
pub fn decode(text: &str) -> Option<std::vec::Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let mut bytes = std::vec![0u8; text.len() / 2];
    decode_into(text, &mut bytes)?;
    Some(bytes)
}

/// `bytes` as lowercase hex digits.
#[cfg(feature = "std")]
pub fn encode(bytes: &[u8]) -> std::string::String {
    struct Hex<'a>(&'a [u8]);
    impl fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write(f, self.0)
        }
    }
    std::string::ToString::to_string(&Hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        assert_eq!(decode_array::<3>("00fF7a"), Some([0, 255, 0x7a]));
        assert_eq!(decode_array::<2>("00ff7a"), None);
        assert_eq!(decode_array::<1>("zz"), None);
        assert_eq!(decode_array::<1>("+1"), None);
        #[cfg(feature = "std")]
        {
            assert_eq!(decode("00ff7a"), Some(std::vec![0, 255, 0x7a]));
            assert_eq!(encode(&[0, 255, 0x7a]), "00ff7a");
            assert_eq!(decode("0"), None);
            assert_eq!(decode("é0"), None);
        }
    }
}
