//! mail-send tests.
