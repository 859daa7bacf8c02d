//! Shared helpers for the raiz benchmarks.
