//! Sets of K-bit codes packed for fast Hamming ranking.
//!
//! The words are orbhash-wire's word layout: bit `i` of a code is `(words[i / 64] >> (i % 64)) & 1`,
//! which read as little-endian bytes is the wire layout of [`orbhash_wire::Code`] (bit `i` is
//! `(bytes[i / 8] >> (i % 8)) & 1`). Packing and distances are orbhash-wire's own
//! ([`pack_words`], [`hamming_words`]), so a code that went up and down the link and the same code
//! computed here compare equal bit for bit.

use orbhash_wire::{hamming_words, pack_words, words_for, Code};

use super::EvalError;

/// N codes of K bits each, row-major and contiguous: row `n` is `words[n * W .. (n + 1) * W]` with
/// `W = ceil(K / 64)`. Bits past K in the last word are always zero, so XOR + popcount over whole
/// words counts only real bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSet {
    bits: usize,
    words_per_code: usize,
    words: Vec<u64>,
}

impl CodeSet {
    /// An empty set of `bits`-bit codes, to fill with [`CodeSet::push_signs`] and friends.
    pub fn new(bits: usize) -> Result<Self, EvalError> {
        if bits == 0 {
            return Err(EvalError::ZeroBits);
        }
        let wire_bits = u16::try_from(bits).map_err(|_| EvalError::InvalidOption {
            what: "code length",
            value: bits.to_string(),
            why: "longer than 65535 bits",
        })?;
        Ok(Self {
            bits,
            words_per_code: words_for(wire_bits),
            words: Vec::new(),
        })
    }

    /// Codes from real-valued hash-layer outputs, a flat row-major N × K matrix: bit = `value > 0`,
    /// the test-time binarisation of DHCNN (so an exact zero is bit 0, as [`Code::from_signs`]).
    pub fn from_signs(values: &[f32], bits: usize) -> Result<Self, EvalError> {
        let mut set = Self::new(bits)?;
        if values.len() % bits != 0 {
            return Err(EvalError::RaggedFlat {
                what: "hash outputs",
                len: values.len(),
                row_len: bits,
            });
        }
        set.words.reserve(values.len() / bits * set.words_per_code);
        for row in values.chunks_exact(bits) {
            set.push_signs(row)?;
        }
        Ok(set)
    }

    /// Codes from one `Vec<f32>` of hash-layer outputs per item; K is the first row's length.
    pub fn from_sign_rows(rows: &[Vec<f32>]) -> Result<Self, EvalError> {
        let bits = rows.first().map_or(0, Vec::len);
        let mut set = Self::new(bits)?;
        for values in rows {
            set.push_signs(values)?;
        }
        Ok(set)
    }

    /// Codes from explicit bits, one `Vec<bool>` per item; K is the first row's length.
    pub fn from_bool_rows(rows: &[Vec<bool>]) -> Result<Self, EvalError> {
        let bits = rows.first().map_or(0, Vec::len);
        let mut set = Self::new(bits)?;
        for values in rows {
            set.push_bools(values)?;
        }
        Ok(set)
    }

    /// Codes from packed bytes in the wire layout, `ceil(K / 8)` bytes per code, back to back.
    /// Bits past K in a code's last byte are cleared, so they never count in distances.
    pub fn from_packed_bytes(bytes: &[u8], bits: usize) -> Result<Self, EvalError> {
        let mut set = Self::new(bits)?;
        let per_code = bits.div_ceil(8);
        if bytes.len() % per_code != 0 {
            return Err(EvalError::RaggedFlat {
                what: "packed codes",
                len: bytes.len(),
                row_len: per_code,
            });
        }
        for code in bytes.chunks_exact(per_code) {
            set.push_bytes(code)?;
        }
        Ok(set)
    }

    /// Codes as they came down the link. All must have the same K.
    pub fn from_codes(codes: &[Code]) -> Result<Self, EvalError> {
        let bits = codes.first().map_or(0, |code| usize::from(code.bits()));
        let mut set = Self::new(bits)?;
        for (row, code) in codes.iter().enumerate() {
            if usize::from(code.bits()) != bits {
                return Err(EvalError::RaggedRow {
                    what: "wire codes",
                    row,
                    expected: bits,
                    got: usize::from(code.bits()),
                });
            }
            set.push_bytes(code.as_bytes())?;
        }
        Ok(set)
    }

    /// Appends the code of one row of hash-layer outputs (bit = `value > 0`).
    pub fn push_signs(&mut self, values: &[f32]) -> Result<(), EvalError> {
        self.check_row_len(values.len(), "hash outputs")?;
        self.push_from_fn(|i| values.get(i).is_some_and(|v| *v > 0.0));
        Ok(())
    }

    /// Appends one code given bit by bit.
    pub fn push_bools(&mut self, values: &[bool]) -> Result<(), EvalError> {
        self.check_row_len(values.len(), "code bits")?;
        self.push_from_fn(|i| values.get(i).copied().unwrap_or(false));
        Ok(())
    }

    /// Appends one code in the wire layout (`ceil(K / 8)` bytes, LSB first).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), EvalError> {
        let per_code = self.bits.div_ceil(8);
        if bytes.len() != per_code {
            return Err(EvalError::RaggedRow {
                what: "packed code bytes",
                row: self.len(),
                expected: per_code,
                got: bytes.len(),
            });
        }
        let start = self.words.len();
        self.words.resize(start + self.words_per_code, 0);
        let code = &mut self.words[start..];
        pack_words(bytes, code);
        // Stray bits past K would silently add to every distance; clear them.
        if let Some(last) = code.last_mut() {
            *last &= last_word_mask(self.bits);
        }
        Ok(())
    }

    fn push_from_fn(&mut self, bit: impl Fn(usize) -> bool) {
        for w in 0..self.words_per_code {
            let mut word = 0u64;
            for b in 0..64 {
                let i = w * 64 + b;
                if i < self.bits && bit(i) {
                    word |= 1 << b;
                }
            }
            self.words.push(word);
        }
    }

    fn check_row_len(&self, len: usize, what: &'static str) -> Result<(), EvalError> {
        if len != self.bits {
            return Err(EvalError::RaggedRow {
                what,
                row: self.len(),
                expected: self.bits,
                got: len,
            });
        }
        Ok(())
    }

    /// K.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.words.len() / self.words_per_code
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn words_per_code(&self) -> usize {
        self.words_per_code
    }

    /// The packed words of code `index`, or `None` past the end.
    pub fn row(&self, index: usize) -> Option<&[u64]> {
        let start = index.checked_mul(self.words_per_code)?;
        self.words.get(start..start + self.words_per_code)
    }

    /// Bit `bit` of code `index`, or `None` when either is out of range.
    pub fn bit(&self, index: usize, bit: usize) -> Option<bool> {
        if bit >= self.bits {
            return None;
        }
        let row = self.row(index)?;
        row.get(bit / 64).map(|word| (word >> (bit % 64)) & 1 == 1)
    }

    /// Code `index` in the wire byte layout (`ceil(K / 8)` bytes).
    pub fn code_bytes(&self, index: usize) -> Result<Vec<u8>, EvalError> {
        let row = self.row(index).ok_or(EvalError::CodeIndex {
            index,
            len: self.len(),
        })?;
        let mut bytes: Vec<u8> = row.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(self.bits.div_ceil(8));
        Ok(bytes)
    }

    /// Code `index` as a wire [`Code`]; fails for a K the wire format does not carry.
    pub fn to_code(&self, index: usize) -> Result<Code, EvalError> {
        let bits = u16::try_from(self.bits).map_err(|_| EvalError::InvalidOption {
            what: "code length",
            value: self.bits.to_string(),
            why: "longer than any wire code",
        })?;
        Ok(Code::from_bytes(bits, &self.code_bytes(index)?)?)
    }

    /// The codes at `indices`, in that order (to split one set into database and queries).
    pub fn select(&self, indices: &[usize]) -> Result<Self, EvalError> {
        let mut out = Self::new(self.bits)?;
        out.words.reserve(indices.len() * self.words_per_code);
        for &index in indices {
            let row = self.row(index).ok_or(EvalError::CodeIndex {
                index,
                len: self.len(),
            })?;
            out.words.extend_from_slice(row);
        }
        Ok(out)
    }

    /// Hamming distance from `query` (a row of another set with the same K) to every code here,
    /// written to `out[n]`. The lengths must match; callers in this module guarantee it.
    pub(crate) fn distances_into(&self, query: &[u64], out: &mut [u32]) {
        match (self.words_per_code, query) {
            // K ≤ 64, the common case, as one XOR and popcount per code in a loop the compiler
            // vectorises: 3.5 times faster in release than calling `hamming_words` per code,
            // which is not inlined across crates (5,000 × 5,000 distances: 15 ms against 52 ms).
            (1, &[query]) => {
                for (d, code) in out.iter_mut().zip(&self.words) {
                    *d = (query ^ code).count_ones();
                }
            }
            _ => {
                for (d, code) in out
                    .iter_mut()
                    .zip(self.words.chunks_exact(self.words_per_code))
                {
                    *d = hamming_words(code, query);
                }
            }
        }
    }

    /// Hamming distance from `query` to every code in this set. `query` must have the same K.
    pub fn distances(&self, query: &[u64]) -> Result<Vec<u32>, EvalError> {
        if query.len() != self.words_per_code {
            return Err(EvalError::RaggedRow {
                what: "query words",
                row: 0,
                expected: self.words_per_code,
                got: query.len(),
            });
        }
        let mut out = vec![0; self.len()];
        self.distances_into(query, &mut out);
        Ok(out)
    }
}

fn last_word_mask(bits: usize) -> u64 {
    match bits % 64 {
        0 => u64::MAX,
        rest => (1u64 << rest) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_rule_is_strictly_positive() {
        let set = CodeSet::from_signs(&[1.0, 0.0, -1.0, 2.0], 4).unwrap();
        assert_eq!(set.row(0), Some(&[0b1001u64][..]));
    }

    #[test]
    fn stray_high_bits_are_cleared() {
        let set = CodeSet::from_packed_bytes(&[0xFF], 4).unwrap();
        assert_eq!(set.row(0), Some(&[0b1111u64][..]));
    }

    #[test]
    fn multi_word_distances() {
        let mut a = vec![false; 100];
        let b = vec![true; 100];
        a[99] = true;
        let set = CodeSet::from_bool_rows(&[a.clone(), b]).unwrap();
        let q = CodeSet::from_bool_rows(&[a]).unwrap();
        assert_eq!(set.distances(q.row(0).unwrap()).unwrap(), vec![0, 99]);
    }
}
