//! Where the engine computes. With the `cuda` feature it uses the first
//! NVIDIA GPU when a driver is present; otherwise — and always without the
//! feature — the CPU (`flex`). Creating a CUDA device without a driver
//! panics inside cudarc, so the driver is looked for first and the attempt
//! is guarded: a missing GPU costs one log line, never a crash.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_cuda_or_a_driver_the_cpu_is_chosen() {
        assert_eq!(choose(false), Compute::Cpu);
        if !cfg!(feature = "cuda") || !cuda_driver_present() {
            assert_eq!(choose(true), Compute::Cpu);
        }
        assert_eq!(Compute::Cuda(1).to_string(), "CUDA GPU 1");
    }
}
