//! LSH and ITQ: ITQ's alternation behaves as Gong & Lazebnik prove it must, and both hash
//! well-separated synthetic clusters far above chance.

use orbhash_host::eval::synthetic::clustered_features;
use orbhash_host::eval::{
    evaluate_retrieval, itq, itq_with_pca, lsh, EvalError, FeatureMatrix, ItqOptions, Pca,
    RetrievalOptions,
};

#[test]
fn itq_loss_never_increases_and_rotation_stays_orthogonal() {
    let (features, _) = clustered_features(6, 40, 48, 3.0, 11).unwrap();
    let fitted = itq(&features, 16, &ItqOptions::default()).unwrap();
    assert_eq!(fitted.loss_history.len(), 50);
    for w in fitted.loss_history.windows(2) {
        // Each half-step is an exact minimisation, so only rounding can make it go up.
        assert!(w[1] <= w[0] * (1.0 + 1e-9), "{} then {}", w[0], w[1]);
    }
    let (first, last) = (fitted.loss_history[0], fitted.loss_history[49]);
    assert!(last < first, "loss {first} → {last}");
    let r = &fitted.rotation;
    let identity = r.transpose() * r;
    for i in 0..16 {
        for j in 0..16 {
            let expected = if i == j { 1.0 } else { 0.0 };
            assert!((identity[(i, j)] - expected).abs() < 1e-9, "RᵀR[{i},{j}]");
        }
    }
    assert_eq!(fitted.hash.bits(), 16);
    assert_eq!(fitted.hash.dims(), 48);
}

#[test]
fn itq_and_lsh_beat_chance_on_clusters() {
    let classes = 8;
    let (database, db_labels) = clustered_features(classes, 60, 64, 4.0, 21).unwrap();
    // Same seed, so the same class centres; the queries are the next draws of each cluster.
    let (all, all_labels) = clustered_features(classes, 80, 64, 4.0, 21).unwrap();
    let query_rows: Vec<usize> = (0..all.rows()).filter(|i| i % 80 >= 60).collect();
    let queries = FeatureMatrix::from_rows(
        &query_rows
            .iter()
            .map(|&i| all.row(i).unwrap().to_vec())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let query_labels: Vec<usize> = query_rows.iter().map(|&i| all_labels[i]).collect();

    let options = RetrievalOptions::default();
    let fitted = itq(&database, 32, &ItqOptions::default()).unwrap();
    let itq_map = evaluate_retrieval(
        &fitted.hash.encode(&database).unwrap(),
        &db_labels,
        &fitted.hash.encode(&queries).unwrap(),
        &query_labels,
        &options,
    )
    .unwrap()
    .map;
    let lsh_hash = lsh(&database, 64, 5).unwrap();
    let lsh_map = evaluate_retrieval(
        &lsh_hash.encode(&database).unwrap(),
        &db_labels,
        &lsh_hash.encode(&queries).unwrap(),
        &query_labels,
        &options,
    )
    .unwrap()
    .map;
    // Chance is about 1/8 = 0.125.
    assert!(itq_map > 0.8, "ITQ mAP {itq_map}");
    assert!(lsh_map > 0.8, "LSH mAP {lsh_map}");
}

#[test]
fn lsh_is_seeded_and_pca_is_reusable() {
    let (features, _) = clustered_features(3, 20, 10, 2.0, 1).unwrap();
    assert_eq!(lsh(&features, 8, 3).unwrap(), lsh(&features, 8, 3).unwrap());
    assert_ne!(lsh(&features, 8, 3).unwrap(), lsh(&features, 8, 4).unwrap());
    let pca = Pca::fit(&features, 8).unwrap();
    assert!(pca.eigenvalues.windows(2).all(|w| w[0] >= w[1]));
    let opts = ItqOptions::default();
    // PCA at 8 components serves a 4-bit ITQ exactly as a PCA fitted at 4 would.
    let a = itq_with_pca(&features, &pca, 4, &opts).unwrap();
    let b = itq(&features, 4, &opts).unwrap();
    let (ca, cb) = (
        a.hash.encode(&features).unwrap(),
        b.hash.encode(&features).unwrap(),
    );
    assert_eq!(ca, cb);
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(
        FeatureMatrix::from_flat(vec![1.0; 7], 2),
        Err(EvalError::RaggedFlat { .. })
    ));
    assert!(matches!(
        FeatureMatrix::from_flat(vec![1.0, f32::NAN, 0.0, 0.0], 2),
        Err(EvalError::NonFinite { row: 0, .. })
    ));
    assert!(matches!(
        FeatureMatrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]),
        Err(EvalError::RaggedRow { row: 1, .. })
    ));
    let (features, _) = clustered_features(2, 5, 6, 2.0, 1).unwrap();
    assert!(matches!(
        itq(&features, 7, &ItqOptions::default()),
        Err(EvalError::TooFewFeatures { .. })
    ));
    assert!(matches!(lsh(&features, 0, 1), Err(EvalError::ZeroBits)));
    let pca = Pca::fit(&features, 3).unwrap();
    assert!(matches!(
        itq_with_pca(&features, &pca, 4, &ItqOptions::default()),
        Err(EvalError::InvalidOption { .. })
    ));
    let narrow = FeatureMatrix::from_flat(vec![0.0; 4], 2).unwrap();
    assert!(lsh(&features, 4, 1).unwrap().encode(&narrow).is_err());
}

/// `cargo test --release -p orbhash-host --test eval_baselines -- --ignored
/// --nocapture`: fitting cost at a realistic size (5,000 × 1,280 features, as AID's database
/// with EfficientNet-Lite0 features).
#[test]
#[ignore = "timing, run in release by hand"]
fn timing_pca_itq_lsh_at_realistic_size() {
    let (features, _) = clustered_features(30, 5000 / 30 + 1, 1280, 1.0, 3).unwrap();
    let start = std::time::Instant::now();
    let pca = Pca::fit(&features, 64).unwrap();
    println!(
        "PCA of {} × {}: {:.1} s",
        features.rows(),
        features.cols(),
        start.elapsed().as_secs_f64()
    );
    for bits in [16, 32, 64] {
        let start = std::time::Instant::now();
        let fitted = itq_with_pca(&features, &pca, bits, &ItqOptions::default()).unwrap();
        let codes = fitted.hash.encode(&features).unwrap();
        println!(
            "ITQ {bits} bits, 50 iterations + encoding {} items: {:.1} s",
            codes.len(),
            start.elapsed().as_secs_f64()
        );
    }
    let start = std::time::Instant::now();
    let codes = lsh(&features, 64, 1).unwrap().encode(&features).unwrap();
    println!(
        "LSH 64 bits, fit + encode {} items: {:.1} s",
        codes.len(),
        start.elapsed().as_secs_f64()
    );
}
