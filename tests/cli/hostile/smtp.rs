//! Hostile-peer cases for smtp (see the module above).

#[allow(unused_imports)]
use super::*;
