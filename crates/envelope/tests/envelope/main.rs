//! Integration tests of keyward-envelope, in one binary (one link on 2 cores).

mod cache;
mod common;

mod props;
mod roundtrip;
mod tamper;
mod vectors;
