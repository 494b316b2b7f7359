//! `cuttle stats` (filled in below).
