//! Hostile-peer cases for imap (see the module above).

#[allow(unused_imports)]
use super::*;
