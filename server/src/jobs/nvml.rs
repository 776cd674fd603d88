//! Live figures of NVIDIA GPUs for the workers' heartbeats — memory total
//! and free, utilisation — through NVML. The library is loaded at run
//! time: on a machine without NVIDIA's driver `open` says so once in the
//! log and the worker reports no live figures (it still runs).

use hone_protocol::{Device, DeviceKind, LiveFigures};

/// An initialised NVML.
pub struct Live(nvml_wrapper::Nvml);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(NVML)")
    }
}

impl Live {
    /// NVML, if this machine has NVIDIA's driver.
    pub fn open() -> Option<Live> {
        match nvml_wrapper::Nvml::init() {
            Ok(n) => Some(Live(n)),
            Err(e) => {
                tracing::info!(error = %e, "NVML is not available: workers report no live GPU figures");
                None
            }
        }
    }

    /// The GPU's figures now; `None` for the CPU, or when NVML cannot read
    /// that index (a declared device this machine does not have).
    pub fn figures(&self, d: &Device) -> Option<LiveFigures> {
        if d.kind != DeviceKind::Cuda {
            return None;
        }
        let gpu = self.0.device_by_index(d.index?).ok()?;
        let memory = gpu.memory_info().ok()?;
        let busy = gpu.utilization_rates().ok()?;
        Some(LiveFigures {
            memory_total_bytes: memory.total,
            memory_free_bytes: memory.free,
            utilisation_percent: busy.gpu,
        })
    }
}
