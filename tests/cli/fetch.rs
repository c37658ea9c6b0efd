//! mail-fetch tests.
