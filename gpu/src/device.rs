//! Where the engine computes. With the `cuda` feature it uses the first
//! NVIDIA GPU when a driver is present; otherwise — and always without the
//! feature — the CPU (`flex`). Creating a CUDA device without a driver
//! panics inside cudarc, so the driver is looked for first and the attempt
//! is guarded: a missing GPU costs one log line, never a crash.
//!
//! `devices` lists what this machine has (`hone-train devices`), in the
//! protocol's `Device` shape, for the server to match jobs to machines.

use hone_protocol::{Device, DeviceKind};

/// The compute device chosen for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compute {
    Cpu,
    /// An NVIDIA GPU by index (feature `cuda`).
    Cuda(usize),
}

impl std::fmt::Display for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compute::Cpu => f.write_str("CPU"),
            Compute::Cuda(i) => write!(f, "CUDA GPU {i}"),
        }
    }
}

/// Directories where the NVIDIA driver's `libcuda.so.1` is installed.
fn library_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/nvidia/lib64",
        "/usr/lib/wsl/lib",
    ] {
        dirs.push(d.into());
    }
    dirs
}

/// Whether an NVIDIA driver library is installed.
pub fn cuda_driver_present() -> bool {
    library_dirs()
        .iter()
        .any(|d| d.join("libcuda.so.1").exists() || d.join("libcuda.so").exists())
}

/// The device to use: CUDA when built with it and a driver is present,
/// else the CPU, saying why once.
pub fn choose(prefer_gpu: bool) -> Compute {
    if !prefer_gpu {
        return Compute::Cpu;
    }
    match gpu() {
        Ok(c) => c,
        Err(why) => {
            if cfg!(feature = "cuda") {
                tracing::warn!("{why}; training on the CPU");
            } else {
                tracing::info!("{why}; training on the CPU");
            }
            Compute::Cpu
        }
    }
}

/// The first NVIDIA GPU, or why there is none usable.
pub fn gpu() -> Result<Compute, &'static str> {
    if !cfg!(feature = "cuda") {
        return Err("built without CUDA support");
    }
    if !cuda_driver_present() {
        return Err("no NVIDIA driver (libcuda.so.1) found");
    }
    if cuda_usable() {
        Ok(Compute::Cuda(0))
    } else {
        Err("the NVIDIA driver is present but no CUDA device could be opened")
    }
}

/// Opens CUDA device 0 once, catching the panic cudarc raises when it
/// cannot.
#[cfg(feature = "cuda")]
fn cuda_usable() -> bool {
    std::panic::catch_unwind(|| {
        let device = burn::backend::cuda::CudaDevice::new(0);
        let t = burn::tensor::Tensor::<burn::backend::Cuda, 1>::zeros([1], &device);
        t.into_data().num_elements() == 1
    })
    .unwrap_or(false)
}

#[cfg(not(feature = "cuda"))]
fn cuda_usable() -> bool {
    false
}

/// Every compute device here: each usable NVIDIA GPU (feature `cuda`,
/// driver present), then the CPU.
pub fn devices() -> Vec<Device> {
    let mut all = if cfg!(feature = "cuda") && cuda_driver_present() {
        cuda_devices()
    } else {
        Vec::new()
    };
    all.push(cpu());
    all
}

/// The CPU with the machine's memory, from `/proc` (Linux); "CPU" and 0
/// where that cannot be read.
pub fn cpu() -> Device {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Device {
        kind: DeviceKind::Cpu,
        index: None,
        name: cpu_name(&info).unwrap_or_else(|| "CPU".into()),
        memory_bytes: mem_total(&mem).unwrap_or(0),
    }
}

/// The first `model name` in `/proc/cpuinfo` text (absent on some ARM
/// kernels).
pub fn cpu_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `MemTotal` in `/proc/meminfo` text, in bytes (the file says kB, meaning
/// KiB).
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Each CUDA device with its name and total memory, through cudarc's
/// driver API (which burn's CUDA backend loads anyway). Opening a device
/// panics inside cudarc when the driver cannot be loaded, so each query is
/// guarded; a device that cannot be opened is left out.
#[cfg(feature = "cuda")]
fn cuda_devices() -> Vec<Device> {
    use cudarc::driver::CudaContext;
    let count = std::panic::catch_unwind(CudaContext::device_count)
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    (0..count.max(0) as u32)
        .filter_map(|i| {
            std::panic::catch_unwind(|| {
                let ctx = CudaContext::new(i as usize).ok()?;
                Some(Device {
                    kind: DeviceKind::Cuda,
                    index: Some(i),
                    name: ctx.name().unwrap_or_else(|_| format!("NVIDIA GPU {i}")),
                    memory_bytes: ctx.total_mem().map_or(0, |b| b as u64),
                })
            })
            .ok()
            .flatten()
        })
        .collect()
}

#[cfg(not(feature = "cuda"))]
fn cuda_devices() -> Vec<Device> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_details_come_from_proc() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9654 96-Core Processor\n";
        assert_eq!(
            cpu_name(info).as_deref(),
            Some("AMD EPYC 9654 96-Core Processor")
        );
        assert_eq!(cpu_name("processor\t: 0\nBogoMIPS\t: 50.00\n"), None);
        let mem = "MemTotal:       131891212 kB\nMemFree:        1000 kB\n";
        assert_eq!(mem_total(mem), Some(131_891_212 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        let here = devices();
        assert_eq!(here.last().map(|d| d.kind), Some(DeviceKind::Cpu));
        assert!(!here[here.len() - 1].name.is_empty());
    }

    #[test]
    fn without_cuda_or_a_driver_the_cpu_is_chosen() {
        assert_eq!(choose(false), Compute::Cpu);
        if !cfg!(feature = "cuda") || !cuda_driver_present() {
            assert_eq!(choose(true), Compute::Cpu);
        }
        assert_eq!(Compute::Cuda(1).to_string(), "CUDA GPU 1");
    }
}
