//! A tile's binary hash code: K bits, packed little-endian into bytes.
//!
//! On the wire a code is its K/8 packed bytes, nothing else: K travels once per packet.
//!
//! # The bit layout (one for the whole system)
//!
//! Bit `i` of a code (the sign of hash output `i`) is `(bytes[i / 8] >> (i % 8)) & 1`. Search
//! and evaluation work on the same bits as little-endian `u64` words ([`pack_words`]): bit `i` is
//! `(words[i / 64] >> (i % 64)) & 1`, the last word zero-padded. Both numberings agree, so XOR
//! and popcount over words ([`hamming_words`]) equal [`hamming`] over bytes.

use heapless::Vec;
use serde::{Deserialize, Serialize};

/// The longest code the wire format carries, in bits.
pub const MAX_BITS: usize = 256;
/// The longest code the wire format carries, in bytes.
pub const MAX_BYTES: usize = MAX_BITS / 8;

/// Code lengths a model may export. Anything else is refused at the boundary.
pub const SUPPORTED_BITS: [u16; 6] = [16, 32, 48, 64, 128, 256];

/// Whether `bits` is a code length the wire format carries.
pub fn is_supported_length(bits: u16) -> bool {
    SUPPORTED_BITS.contains(&bits)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// K is not one of [`SUPPORTED_BITS`].
    UnsupportedLength(u16),
    /// The byte slice does not hold exactly K/8 bytes.
    WrongByteCount { bits: u16, bytes: usize },
}

impl core::fmt::Display for CodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CodeError::UnsupportedLength(bits) => {
                write!(
                    f,
                    "unsupported code length {bits} bits (supported: 16, 32, 48, 64, 128, 256)"
                )
            }
            CodeError::WrongByteCount { bits, bytes } => {
                write!(f, "a {bits}-bit code needs {} bytes, got {bytes}", bits / 8)
            }
        }
    }
}

impl core::error::Error for CodeError {}

/// A K-bit hash code. Bit `i` is `(bytes[i / 8] >> (i % 8)) & 1`.
///
/// The byte count always equals K/8: every constructor, deserialisation included, checks it, so
/// [`hamming`] never compares a short code with a long one by accident.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "UncheckedCode")]
pub struct Code {
    bits: u16,
    bytes: Vec<u8, MAX_BYTES>,
}

/// What serde reads before [`Code::from_bytes`] checks it.
#[derive(Deserialize)]
struct UncheckedCode {
    bits: u16,
    bytes: Vec<u8, MAX_BYTES>,
}

impl TryFrom<UncheckedCode> for Code {
    type Error = CodeError;
    fn try_from(unchecked: UncheckedCode) -> Result<Self, CodeError> {
        Code::from_bytes(unchecked.bits, &unchecked.bytes)
    }
}

impl Code {
    pub fn from_bytes(bits: u16, bytes: &[u8]) -> Result<Self, CodeError> {
        if !is_supported_length(bits) {
            return Err(CodeError::UnsupportedLength(bits));
        }
        if bytes.len() != usize::from(bits / 8) {
            return Err(CodeError::WrongByteCount {
                bits,
                bytes: bytes.len(),
            });
        }
        let mut packed = Vec::new();
        // Length was checked against MAX_BYTES through SUPPORTED_BITS above.
        let _ = packed.extend_from_slice(bytes);
        Ok(Self {
            bits,
            bytes: packed,
        })
    }

    /// The code of a model's real-valued output: bit `i` is set where `values[i] > 0`, the usual
    /// sign binarisation of deep hashing. K is `values.len()`.
    pub fn from_signs(values: &[f32]) -> Result<Self, CodeError> {
        let bits = u16::try_from(values.len()).unwrap_or(u16::MAX);
        if !is_supported_length(bits) {
            return Err(CodeError::UnsupportedLength(bits));
        }
        let mut packed = [0u8; MAX_BYTES];
        for (byte, chunk) in packed.iter_mut().zip(values.chunks(8)) {
            *byte = chunk
                .iter()
                .enumerate()
                .filter(|(_, value)| **value > 0.0)
                .fold(0u8, |acc, (bit, _)| acc | (1 << bit));
        }
        Self::from_bytes(bits, packed.get(..usize::from(bits / 8)).unwrap_or(&[]))
    }

    pub fn bits(&self) -> u16 {
        self.bits
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The code in the word layout (module docs), `words_for(K)` words.
    pub fn to_words(&self) -> heapless::Vec<u64, { MAX_BITS / WORD_BITS }> {
        let mut words = heapless::Vec::new();
        // words_for(K) <= MAX_BITS / WORD_BITS for every supported K.
        let _ = words.resize(words_for(self.bits), 0);
        pack_words(&self.bytes, &mut words);
        words
    }

    /// Bit `index`, or `None` past K.
    pub fn bit(&self, index: usize) -> Option<bool> {
        self.bytes
            .get(index / 8)
            .map(|byte| (byte >> (index % 8)) & 1 == 1)
    }
}

/// Number of differing bits. Codes of different lengths are never comparable.
pub fn hamming(a: &Code, b: &Code) -> Option<u32> {
    if a.bits != b.bits {
        return None;
    }
    // Eight bytes at a time: one popcount instruction per word on targets that have one.
    let words_a = a.bytes.chunks_exact(8);
    let words_b = b.bytes.chunks_exact(8);
    let tail: u32 = words_a
        .remainder()
        .iter()
        .zip(words_b.remainder())
        .map(|(x, y)| (x ^ y).count_ones())
        .sum();
    let words: u32 = words_a
        .zip(words_b)
        .map(|(x, y)| (word(x) ^ word(y)).count_ones())
        .sum();
    Some(words + tail)
}

fn word(bytes: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    for (slot, byte) in le.iter_mut().zip(bytes) {
        *slot = *byte;
    }
    u64::from_le_bytes(le)
}

/// Bits in one search word.
pub const WORD_BITS: usize = 64;

/// `u64` words a code of `bits` takes in the word layout (at least one).
pub fn words_for(bits: u16) -> usize {
    usize::from(bits).div_ceil(WORD_BITS).max(1)
}

/// A code's bytes in the word layout (module docs): fills `words`, zero-padding past the bytes.
pub fn pack_words(bytes: &[u8], words: &mut [u64]) {
    let mut chunks = bytes.chunks(8);
    for slot in words.iter_mut() {
        *slot = chunks.next().map_or(0, word);
    }
}

/// Hamming distance between two codes in the word layout; words past the shorter one are ignored,
/// so callers compare only codes of one K.
pub fn hamming_words(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn postcard_round_trip_keeps_every_bit() {
        let code = Code::from_bytes(64, &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]).expect("valid code");
        let mut buf = [0u8; 64];
        let used = postcard::to_slice(&code, &mut buf).expect("fits");
        let back: Code = postcard::from_bytes(used).expect("decodes");
        assert_eq!(back, code);
        assert_eq!(hamming(&code, &back), Some(0));
    }

    #[test]
    fn deserialising_checks_the_byte_count() {
        // bits = 64 (varint 0x40), then three bytes only.
        let forged = [0x40, 3, 1, 2, 3];
        assert!(postcard::from_bytes::<Code>(&forged).is_err());
    }

    #[test]
    fn codes_of_different_lengths_are_not_comparable() {
        let short = Code::from_bytes(16, &[0, 0]).expect("valid");
        let long = Code::from_bytes(32, &[0, 0, 0, 0]).expect("valid");
        assert_eq!(hamming(&short, &long), None);
    }

    #[test]
    fn signs_pack_little_endian() {
        let mut values = [-1.0f32; 16];
        values[0] = 0.5;
        values[9] = 2.0;
        let code = Code::from_signs(&values).expect("16 values");
        assert_eq!(code.as_bytes(), &[0x01, 0x02]);
        assert_eq!(code.bit(9), Some(true));
        assert_eq!(code.bit(16), None);
        assert!(Code::from_signs(&[1.0; 20]).is_err());
    }

    #[test]
    fn words_keep_the_bit_numbering() {
        let code = Code::from_bytes(128, &[1, 0, 0, 0, 0, 0, 0, 0x80, 2, 0, 0, 0, 0, 0, 0, 0])
            .expect("valid");
        assert_eq!(code.to_words().as_slice(), &[1 | 1 << 63, 2]);
        let mut short = [u64::MAX; 2];
        pack_words(&[0xff, 0x01], &mut short);
        assert_eq!(short, [0x01ff, 0]);
        assert_eq!(words_for(16), 1);
        assert_eq!(words_for(128), 2);
    }

    fn code_of(bits: u16) -> impl Strategy<Value = Code> {
        proptest::collection::vec(any::<u8>(), usize::from(bits / 8))
            .prop_map(move |bytes| Code::from_bytes(bits, &bytes).expect("right length"))
    }

    proptest! {
        #[test]
        fn hamming_matches_a_bit_by_bit_count(
            (a, b) in proptest::sample::select(SUPPORTED_BITS.to_vec())
                .prop_flat_map(|bits| (code_of(bits), code_of(bits)))
        ) {
            let slow = (0..usize::from(a.bits())).filter(|&i| a.bit(i) != b.bit(i)).count();
            prop_assert_eq!(hamming(&a, &b), Some(slow as u32));
            prop_assert_eq!(hamming_words(&a.to_words(), &b.to_words()), slow as u32);
        }

        #[test]
        fn every_code_survives_postcard(code in proptest::sample::select(SUPPORTED_BITS.to_vec())
            .prop_flat_map(code_of))
        {
            let mut buf = [0u8; 64];
            let used = postcard::to_slice(&code, &mut buf).expect("fits");
            prop_assert_eq!(postcard::from_bytes::<Code>(used).expect("decodes"), code);
        }
    }
}
