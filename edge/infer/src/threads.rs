//! How many threads tract's matrix products use. Multithreading is the `multithread` feature
//! (on by default): rayon's job types, instantiated for tract's kernels, add about 2.9 MB to the
//! binary, so the flight build, which has a size budget, leaves it out.

#[derive(Debug, thiserror::Error)]
#[error(
    "{0} threads asked for, but this build of orbhash has no multithreading (cargo feature \
     `multithread` of orbhash-infer); use --threads 1"
)]
pub struct ThreadsUnavailable(pub usize);

/// Sets the executor for every tract run that follows: one thread, or a pool of `threads`.
pub fn use_threads(threads: usize) -> Result<(), ThreadsUnavailable> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads <= 1 {
        set_default_executor(Executor::SingleThread);
        return Ok(());
    }
    #[cfg(feature = "multithread")]
    {
        set_default_executor(Executor::multithread(threads));
        Ok(())
    }
    #[cfg(not(feature = "multithread"))]
    Err(ThreadsUnavailable(threads))
}
