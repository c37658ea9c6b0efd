//! Hostile-peer cases for pop3 (see the module above).

#[allow(unused_imports)]
use super::*;
