//! CodeSet packing agrees bit for bit with the wire `Code`, and its Hamming distances with
//! `orbhash_wire::hamming`.

use orbhash_host::eval::{CodeSet, EvalError};
use orbhash_wire::{hamming, Code};

/// A deterministic mix of positive, negative and zero activations.
fn activations(rows: usize, bits: usize) -> Vec<f32> {
    (0..rows * bits)
        .map(|i| match (i * 7919 + i / 3) % 5 {
            0 => 0.0,
            1 | 2 => 0.5 + i as f32,
            _ => -1.0 - i as f32,
        })
        .collect()
}

#[test]
fn sign_codes_match_wire_codes_bit_for_bit() {
    for bits in [16usize, 32, 48, 64, 128, 256] {
        let values = activations(5, bits);
        let set = CodeSet::from_signs(&values, bits).unwrap();
        assert_eq!(set.len(), 5);
        for (n, row) in values.chunks_exact(bits).enumerate() {
            let wire = Code::from_signs(row).unwrap();
            assert_eq!(
                set.code_bytes(n).unwrap(),
                wire.as_bytes(),
                "K = {bits}, row {n}"
            );
            assert_eq!(set.to_code(n).unwrap(), wire);
            for i in 0..bits {
                assert_eq!(set.bit(n, i), wire.bit(i), "K = {bits}, row {n}, bit {i}");
                // The documented layout, spelled out.
                let by_hand = (wire.as_bytes()[i / 8] >> (i % 8)) & 1 == 1;
                assert_eq!(set.bit(n, i), Some(by_hand));
            }
        }
    }
}

#[test]
fn bit_i_is_lsb_first_within_bytes() {
    // Bits 0 and 9 set: byte 0 = 0b0000_0001, byte 1 = 0b0000_0010.
    let mut bits = vec![false; 16];
    bits[0] = true;
    bits[9] = true;
    let set = CodeSet::from_bool_rows(&[bits]).unwrap();
    assert_eq!(set.code_bytes(0).unwrap(), vec![0x01, 0x02]);
    assert_eq!(set.row(0).unwrap(), &[0x0201u64]);
}

#[test]
fn wire_codes_round_trip_and_distances_agree() {
    let bits = 64;
    let values = activations(6, bits);
    let wire: Vec<Code> = values
        .chunks_exact(bits)
        .map(|r| Code::from_signs(r).unwrap())
        .collect();
    let set = CodeSet::from_codes(&wire).unwrap();
    assert_eq!(set, CodeSet::from_signs(&values, bits).unwrap());
    let bytes: Vec<u8> = wire.iter().flat_map(|c| c.as_bytes().to_vec()).collect();
    assert_eq!(set, CodeSet::from_packed_bytes(&bytes, bits).unwrap());
    for q in 0..wire.len() {
        let d = set.distances(set.row(q).unwrap()).unwrap();
        for (n, &dn) in d.iter().enumerate() {
            assert_eq!(Some(dn), hamming(&wire[q], &wire[n]));
        }
    }
}

#[test]
fn odd_lengths_pack_and_measure() {
    // K = 100 spans two words; the second is partly used.
    let values = activations(3, 100);
    let set = CodeSet::from_signs(&values, 100).unwrap();
    assert_eq!(set.words_per_code(), 2);
    let bytes = set.code_bytes(1).unwrap();
    assert_eq!(bytes.len(), 13);
    let again = CodeSet::from_packed_bytes(
        &(0..3)
            .flat_map(|n| set.code_bytes(n).unwrap())
            .collect::<Vec<_>>(),
        100,
    )
    .unwrap();
    assert_eq!(again, set);
    let d = set.distances(set.row(0).unwrap()).unwrap();
    let manual: Vec<u32> = (0..3)
        .map(|n| (0..100).filter(|&i| set.bit(0, i) != set.bit(n, i)).count() as u32)
        .collect();
    assert_eq!(d, manual);
    // A 100-bit code has no wire form.
    assert!(set.to_code(0).is_err());
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(
        CodeSet::from_signs(&[1.0; 10], 4),
        Err(EvalError::RaggedFlat { .. })
    ));
    assert!(matches!(
        CodeSet::from_signs(&[], 0),
        Err(EvalError::ZeroBits)
    ));
    assert!(matches!(
        CodeSet::from_sign_rows(&[vec![1.0; 4], vec![1.0; 3]]),
        Err(EvalError::RaggedRow { row: 1, .. })
    ));
    assert!(matches!(
        CodeSet::from_sign_rows(&[]),
        Err(EvalError::ZeroBits)
    ));
    assert!(matches!(
        CodeSet::from_packed_bytes(&[0; 3], 16),
        Err(EvalError::RaggedFlat { .. })
    ));
    let set = CodeSet::from_signs(&[1.0; 8], 8).unwrap();
    assert!(matches!(
        set.code_bytes(5),
        Err(EvalError::CodeIndex { index: 5, len: 1 })
    ));
    assert!(set.distances(&[0, 0]).is_err());
    assert_eq!(set.row(1), None);
    assert_eq!(set.bit(0, 8), None);
}
