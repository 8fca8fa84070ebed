//! Placeholder example.
fn main() {}
