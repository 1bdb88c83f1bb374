//! Integration tests of keyward-envelope, in one binary (one link on 2 cores).

mod cache;
mod common;
mod interop;
mod props;
mod roundtrip;
mod tamper;
mod vectors;
