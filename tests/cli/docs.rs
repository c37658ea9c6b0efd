//! Man page and completion checks.
