//! OA, AA, kappa and the confusion matrix against values computed by hand.

use orbhash_host::eval::{
    argmax, classification_metrics, predictions, predictions_flat, ConfusionMatrix, EvalError,
};

/// Pairs (truth, predicted) that make the confusion matrix
/// ```text
///        pred 0  1  2
/// true 0      5  1  0   (6)
/// true 1      2  3  1   (6)
/// true 2      0  1  4   (5)
///            (7) (5) (5)  n = 17
/// ```
fn hand_case() -> (Vec<usize>, Vec<usize>) {
    let counts = [[5, 1, 0], [2, 3, 1], [0, 1, 4]];
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    for (t, row) in counts.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            for _ in 0..c {
                truth.push(t);
                predicted.push(p);
            }
        }
    }
    (truth, predicted)
}

#[test]
fn three_class_hand_computed() {
    let (truth, predicted) = hand_case();
    let m = classification_metrics(&predicted, &truth, 3).unwrap();
    assert_eq!(
        m.confusion.counts,
        vec![vec![5, 1, 0], vec![2, 3, 1], vec![0, 1, 4]]
    );
    assert_eq!(m.samples, 17);
    // OA = 12/17.
    assert!((m.overall_accuracy - 12.0 / 17.0).abs() < 1e-12);
    // AA = (5/6 + 3/6 + 4/5) / 3 = 32/45.
    assert!((m.average_accuracy - 32.0 / 45.0).abs() < 1e-12);
    // p_o = 12/17 = 204/289, p_e = (6·7 + 6·5 + 5·5)/17² = 97/289,
    // kappa = (204 − 97) / (289 − 97) = 107/192.
    assert!((m.kappa - 107.0 / 192.0).abs() < 1e-12, "{}", m.kappa);
    assert_eq!(m.classes_present, 3);
    assert_eq!(
        m.per_class_accuracy,
        vec![Some(5.0 / 6.0), Some(0.5), Some(0.8)]
    );
}

#[test]
fn absent_class_is_left_out_of_aa() {
    // Four classes; class 3 never occurs in the truth but is predicted once.
    let truth = [0, 0, 1, 1, 2, 2];
    let predicted = [0, 0, 1, 3, 2, 1];
    let m = classification_metrics(&predicted, &truth, 4).unwrap();
    assert_eq!(m.classes_present, 3);
    assert_eq!(m.per_class_accuracy[3], None);
    // (1 + 1/2 + 1/2) / 3, not / 4.
    assert!((m.average_accuracy - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.overall_accuracy - 4.0 / 6.0).abs() < 1e-12);
    // Row totals 2,2,2,0; column totals 2,2,1,1: p_e = (4 + 4 + 2 + 0)/36 = 10/36.
    // kappa = (24/36 − 10/36) / (26/36) = 14/26.
    assert!((m.kappa - 14.0 / 26.0).abs() < 1e-12);
    assert_eq!(m.confusion.column_total(3), 1);
    assert_eq!(m.confusion.row_total(3), 0);
}

#[test]
fn perfect_and_chance_agreement() {
    let m = classification_metrics(&[0, 1, 2], &[0, 1, 2], 3).unwrap();
    assert_eq!(
        (m.overall_accuracy, m.average_accuracy, m.kappa),
        (1.0, 1.0, 1.0)
    );
    // Everything one class in truth and prediction: p_e = 1, reported as kappa 1.
    let m = classification_metrics(&[1, 1], &[1, 1], 3).unwrap();
    assert_eq!(m.kappa, 1.0);
    // Always predicting class 0 on a balanced two-class truth: kappa 0.
    let m = classification_metrics(&[0, 0, 0, 0], &[0, 1, 0, 1], 2).unwrap();
    assert!(m.kappa.abs() < 1e-12);
    assert!((m.average_accuracy - 0.5).abs() < 1e-12);
}

#[test]
fn argmax_rules() {
    assert_eq!(argmax(&[0.1, 0.7, 0.2]), Some(1));
    // A tie goes to the lowest index.
    assert_eq!(argmax(&[0.4, 0.4, 0.2]), Some(0));
    assert_eq!(argmax(&[-3.0, -1.0]), Some(1));
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[0.1, f32::NAN]), None);
    assert_eq!(
        predictions(&[vec![0.9, 0.1], vec![0.2, 0.8]]).unwrap(),
        vec![0, 1]
    );
    assert_eq!(
        predictions_flat(&[0.9, 0.1, 0.2, 0.8], 2).unwrap(),
        vec![0, 1]
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(
        classification_metrics(&[0, 1], &[0], 2),
        Err(EvalError::LabelCountMismatch { .. })
    ));
    assert!(matches!(
        classification_metrics(&[], &[], 2),
        Err(EvalError::EmptyQueries)
    ));
    assert!(matches!(
        classification_metrics(&[0, 5], &[0, 1], 2),
        Err(EvalError::LabelOutOfRange {
            what: "predicted labels",
            row: 1,
            label: 5,
            classes: 2
        })
    ));
    assert!(matches!(
        ConfusionMatrix::new(&[0], &[3], 2),
        Err(EvalError::LabelOutOfRange {
            what: "true labels",
            ..
        })
    ));
    assert!(matches!(
        predictions(&[vec![0.1, 0.2], vec![0.3]]),
        Err(EvalError::RaggedRow { row: 1, .. })
    ));
    assert!(matches!(
        predictions(&[vec![f32::NAN, 0.2]]),
        Err(EvalError::NonFinite { row: 0, .. })
    ));
    assert!(matches!(
        predictions_flat(&[0.1, 0.2, 0.3], 2),
        Err(EvalError::RaggedFlat { .. })
    ));
}
