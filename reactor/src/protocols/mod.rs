//! Protocol implementations on top of [`Protocol`](crate::protocol::Protocol).
//! Mirrors `twisted.protocols`.

pub mod basic;
