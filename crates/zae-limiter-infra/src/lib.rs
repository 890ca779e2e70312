//! zae-limiter on AWS: the CloudFormation template rendered from the deploy options
//! ([`template`]), the least-privilege IAM policies ([`iam`]) and the stack lifecycle
//! ([`stack`]: deploy, list with health, delete). Kept out of the `zae-limiter` library so
//! its users do not compile CloudFormation, Lambda and S3 clients.
#![warn(missing_docs)]

pub mod iam;
pub mod package;
pub mod stack;
pub mod template;

pub use template::{render, DeployOptions, OptionsError, Plan};
