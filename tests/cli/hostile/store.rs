//! Hostile-peer cases for store (see the module above).

#[allow(unused_imports)]
use super::*;
