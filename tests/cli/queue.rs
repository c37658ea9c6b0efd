//! mail-queue tests.
