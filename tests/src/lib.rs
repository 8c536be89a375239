//! Helpers for orbhash's end-to-end tests, which live in `tests/tests/`.
