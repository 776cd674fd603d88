//! Plain HTTP routes and layers beside the pages: health probes, the
//! same-origin guard, and file uploads (with the helpers the dataset route
//! shares). Their errors answer in `error::Error`'s JSON shape.

pub mod client;
pub mod guard;
pub mod headers;
pub mod probes;
pub mod serve;
pub mod upload;

pub use guard::same_origin_only;
pub use probes::{healthz, readyz};
pub use upload::{check_declared_size, file_name, upload};
