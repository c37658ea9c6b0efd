//! mail-deliver tests.
