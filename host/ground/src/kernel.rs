//! The popcount kernel of the exact scan, chosen at run time for the CPU it runs on.
//!
//! The default `x86_64` target has no POPCNT instruction: `count_ones` compiles to a dozen bit
//! tricks and the scan runs about 2.5× slower. Rather than ask every ground station to build with
//! `-C target-cpu=native`, the kernels below are compiled three times (portable, `popcnt`, and
//! AVX2 for 64-bit codes: a nibble-table popcount, four codes per instruction) and
//! [`Kernel::detect`] picks the best the CPU has. Building with `RUSTFLAGS="-C target-cpu=native"`
//! makes the portable kernel as fast as `popcnt`; detection still picks AVX2 where present.
//!
//! AVX-512 VPOPCNTQ would do eight codes per instruction, but its intrinsics are stable only since
//! Rust 1.89 and the workspace's minimum is 1.85.
//!
//! Codes are `words` u64 each in the wire crate's word layout ([`orbhash_wire::pack_words`]: K =
//! 16..64 in one word, zero-padded; 128 in two; 256 in four). The portable kernel is
//! [`orbhash_wire::hamming_words`] itself; the x86 ones must agree with it (tested below).

use orbhash_wire::hamming_words;

/// A popcount implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust; whatever the compile target gives `count_ones`.
    Portable,
    /// x86-64 POPCNT, one code (word) at a time.
    Popcnt,
    /// x86-64 AVX2 nibble-table popcount, four 64-bit codes at a time (other K use POPCNT).
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("popcnt")
            {
                return Kernel::Avx2;
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                return Kernel::Popcnt;
            }
        }
        Kernel::Portable
    }

    /// Every kernel this CPU runs (the tests check they agree).
    pub fn available() -> Vec<Self> {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                kernels.push(Kernel::Popcnt);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("popcnt")
            {
                kernels.push(Kernel::Avx2);
            }
        }
        kernels
    }

    /// A kernel by name (`portable`, `popcnt`, `avx2`), if this CPU runs it.
    pub fn by_name(name: &str) -> Option<Self> {
        let wanted = match name {
            "portable" => Kernel::Portable,
            "popcnt" => Kernel::Popcnt,
            "avx2" => Kernel::Avx2,
            _ => return None,
        };
        Self::available().contains(&wanted).then_some(wanted)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Popcnt => "popcnt",
            Kernel::Avx2 => "avx2",
        }
    }

    /// Appends `(base + i, distance)` for every code `i` of `codes` (`words` u64 each) whose
    /// Hamming distance to `query` is below `threshold`.
    pub fn below(
        self,
        codes: &[u64],
        words: usize,
        query: &[u64],
        threshold: u32,
        base: u32,
        out: &mut Vec<(u32, u32)>,
    ) {
        match words {
            1 => self.below_words::<1>(codes, query, threshold, base, out),
            2 => self.below_words::<2>(codes, query, threshold, base, out),
            4 => self.below_words::<4>(codes, query, threshold, base, out),
            _ => below_any(codes, words, query, threshold, base, out),
        }
    }

    fn below_words<const W: usize>(
        self,
        codes: &[u64],
        query: &[u64],
        threshold: u32,
        base: u32,
        out: &mut Vec<(u32, u32)>,
    ) {
        let mut q = [0u64; W];
        for (slot, word) in q.iter_mut().zip(query) {
            *slot = *word;
        }
        match self {
            Kernel::Portable => below_fixed::<W>(codes, &q, threshold, base, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if W == 1 && std::arch::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2 (checked just above; the standard library caches the
                // CPUID probe, so this costs an atomic load per block).
                unsafe { x86::below_avx2(codes, q[0], threshold, base, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Popcnt | Kernel::Avx2 if std::arch::is_x86_feature_detected!("popcnt") => {
                // SAFETY: the CPU has POPCNT (checked just above).
                unsafe { x86::below_popcnt::<W>(codes, &q, threshold, base, out) }
            }
            _ => below_fixed::<W>(codes, &q, threshold, base, out),
        }
    }
}

#[inline(always)]
fn below_fixed<const W: usize>(
    codes: &[u64],
    query: &[u64; W],
    threshold: u32,
    base: u32,
    out: &mut Vec<(u32, u32)>,
) {
    for (index, code) in codes.chunks_exact(W).enumerate() {
        let distance = hamming_words(code, query);
        // Rarely taken once the top-k has filled: the branch predicts well.
        if distance < threshold {
            out.push((base + index as u32, distance));
        }
    }
}

fn below_any(
    codes: &[u64],
    words: usize,
    query: &[u64],
    threshold: u32,
    base: u32,
    out: &mut Vec<(u32, u32)>,
) {
    if words == 0 {
        return;
    }
    for (index, code) in codes.chunks_exact(words).enumerate() {
        let distance = hamming_words(code, query);
        if distance < threshold {
            out.push((base + index as u32, distance));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support POPCNT.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn below_popcnt<const W: usize>(
        codes: &[u64],
        query: &[u64; W],
        threshold: u32,
        base: u32,
        out: &mut Vec<(u32, u32)>,
    ) {
        // Same loop as the portable one; the target feature makes count_ones one instruction.
        super::below_fixed::<W>(codes, query, threshold, base, out);
    }

    /// Popcount of each 64-bit lane: a 16-entry nibble table looked up with `vpshufb`, bytes summed
    /// per lane with `vpsadbw` (Muła, Kurz & Lemire, "Faster Population Counts Using AVX2").
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn popcount_lanes(x: __m256i, table: __m256i, low: __m256i) -> __m256i {
        let lo = _mm256_and_si256(x, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
        let bytes = _mm256_add_epi8(
            _mm256_shuffle_epi8(table, lo),
            _mm256_shuffle_epi8(table, hi),
        );
        _mm256_sad_epu8(bytes, _mm256_setzero_si256())
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn below_avx2(
        codes: &[u64],
        query: u64,
        threshold: u32,
        base: u32,
        out: &mut Vec<(u32, u32)>,
    ) {
        let table = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        let low = _mm256_set1_epi8(0x0f);
        let q = _mm256_set1_epi64x(query as i64);
        let t = _mm256_set1_epi64x(i64::from(threshold));
        // Eight codes per step: two independent vectors keep both shuffle ports busy.
        let chunks = codes.chunks_exact(8);
        let rest = chunks.remainder();
        let rest_start = codes.len() - rest.len();
        for (chunk_index, chunk) in chunks.enumerate() {
            let a = _mm256_loadu_si256(chunk.as_ptr().cast());
            let b = _mm256_loadu_si256(chunk.as_ptr().add(4).cast());
            let da = popcount_lanes(_mm256_xor_si256(a, q), table, low);
            let db = popcount_lanes(_mm256_xor_si256(b, q), table, low);
            // Lane below threshold: t > distance (both small, so signed compare is exact).
            let ma = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(t, da)));
            let mb = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(t, db)));
            let mut mask = (ma | (mb << 4)) as u32;
            if mask != 0 {
                let mut lanes = [0u64; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), da);
                _mm256_storeu_si256(lanes.as_mut_ptr().add(4).cast(), db);
                while mask != 0 {
                    let lane = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let distance = lanes.get(lane).copied().unwrap_or(0) as u32;
                    out.push((base + (chunk_index * 8 + lane) as u32, distance));
                }
            }
        }
        for (offset, code) in rest.iter().enumerate() {
            let distance = (code ^ query).count_ones();
            if distance < threshold {
                out.push((base + (rest_start + offset) as u32, distance));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    #[test]
    fn every_kernel_agrees_with_the_portable_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for words in [1usize, 2, 4] {
            // 1003 codes: not a multiple of 8, so the AVX2 tail runs too.
            let codes: Vec<u64> = (0..1003 * words).map(|_| rng.next_u64()).collect();
            let query: Vec<u64> = (0..words).map(|_| rng.next_u64()).collect();
            for threshold in [0, 20, 32 * words as u32, 64 * words as u32 + 1] {
                let mut expected = Vec::new();
                Kernel::Portable.below(&codes, words, &query, threshold, 5, &mut expected);
                for kernel in Kernel::available() {
                    let mut found = Vec::new();
                    kernel.below(&codes, words, &query, threshold, 5, &mut found);
                    assert_eq!(found, expected, "{kernel:?}, {words} words, < {threshold}");
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kernel in Kernel::available() {
            assert_eq!(Kernel::by_name(kernel.name()), Some(kernel));
        }
        assert_eq!(Kernel::by_name("sse9"), None);
        assert!(Kernel::available().contains(&Kernel::detect()));
    }
}
