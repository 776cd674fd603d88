//! How much memory a training run needs, before it starts. The arithmetic
//! lives in `hone-protocol` (the launch page shows it as settings change);
//! re-exported here so the engine and `hone-train estimate` keep their
//! paths.

pub use hone_protocol::estimate::*;
