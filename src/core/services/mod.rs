//! Typed service definitions. Each service is a feature string, a method set and events, shared by
//! the provider's dispatcher and the controller's typed client.

pub mod player;

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::xmlrpc::Value;

/// Checks that a call got exactly `n` parameters.
pub(crate) fn expect_arity(method: &str, params: &[Value], n: usize) -> Result<()> {
    if params.len() == n {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::BadParams,
            format!("{method} takes {n} parameter(s), got {}", params.len()),
        ))
    }
}
