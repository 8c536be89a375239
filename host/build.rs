//! Bakes the location of the project's libtorch into the `orbhash` binary, so that it runs when
//! started directly (a run-path entry) and can find `libtorch_cuda.so` to load at start-up.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    let Some(root) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = PathBuf::from(root).join("lib");
    println!("cargo:rustc-env=ORBHASH_LIBTORCH_LIB={}", lib.display());
    // RUNPATH, not RPATH: LD_LIBRARY_PATH still wins, so a GPU machine's own PyTorch can be used.
    println!(
        "cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{}",
        lib.display()
    );
}
