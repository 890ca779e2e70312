//! The Lambda handlers of the binary.

pub mod provisioner;
