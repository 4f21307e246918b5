use crate::{Diagnostics, Pipeline, Policy};
pub(crate) fn parse(_src: &[u8], _policy: &Policy) -> Result<Pipeline, Diagnostics> {
    todo!()
}
