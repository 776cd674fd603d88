//! A machine's compute devices as `hone-train devices` lists them, so the
//! server can tell which jobs fit where and the launch page can show it.
//! Finding them is IO and stays in the engine; this is only the shape.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub kind: DeviceKind,
    /// The CUDA device index; `None` for the CPU.
    pub index: Option<u32>,
    pub name: String,
    /// Total memory (the GPU's, or the machine's RAM for the CPU); 0 when
    /// unknown.
    pub memory_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

/// The most memory one device can plausibly report (16 TiB): anything
/// above is a broken report, not a device.
pub const MAX_DEVICE_MEMORY: u64 = 16 << 40;

/// Live figures of a GPU at a heartbeat (NVML), when the worker has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveFigures {
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// GPU utilisation over the driver's last sample period, 0–100.
    pub utilisation_percent: u32,
}

/// Refuses an inventory a worker cannot honestly report: a device listed
/// twice (the same GPU index, or the CPU more than once) or a memory size
/// no device has (none for a GPU, more than [`MAX_DEVICE_MEMORY`]). The
/// message names the device.
pub fn check_inventory(devices: &[Device]) -> Result<(), String> {
    for (i, d) in devices.iter().enumerate() {
        let what = match d.index {
            Some(n) => format!("device {i} ({}, index {n})", d.name),
            None => format!("device {i} ({})", d.name),
        };
        if d.memory_bytes > MAX_DEVICE_MEMORY {
            return Err(format!(
                "{what} reports {} bytes of memory, more than any device has ({MAX_DEVICE_MEMORY})",
                d.memory_bytes
            ));
        }
        if d.kind == DeviceKind::Cuda && d.memory_bytes == 0 {
            return Err(format!("{what} is a GPU that reports no memory"));
        }
        if d.kind == DeviceKind::Cuda && d.index.is_none() {
            return Err(format!("{what} is a GPU without a CUDA index"));
        }
        if let Some(j) = devices[..i]
            .iter()
            .position(|e| e.kind == d.kind && e.index == d.index)
        {
            return Err(format!("{what} is listed twice (also as device {j})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_with_a_device_twice_or_impossible_memory_is_refused() {
        let gpu = |index, memory_bytes| Device {
            kind: DeviceKind::Cuda,
            index: Some(index),
            name: "NVIDIA H200".into(),
            memory_bytes,
        };
        assert_eq!(check_inventory(&[gpu(0, 1 << 30), gpu(1, 1 << 30)]), Ok(()));
        let twice = check_inventory(&[gpu(0, 1 << 30), gpu(0, 1 << 30)]).unwrap_err();
        assert!(
            twice.contains("device 1") && twice.contains("listed twice"),
            "{twice}"
        );
        let huge = check_inventory(&[gpu(0, u64::MAX)]).unwrap_err();
        assert!(huge.contains("more than any device has"), "{huge}");
        let none = check_inventory(&[gpu(3, 0)]).unwrap_err();
        assert!(
            none.contains("index 3") && none.contains("no memory"),
            "{none}"
        );
    }

    #[test]
    fn devices_round_trip() {
        let list = vec![
            Device {
                kind: DeviceKind::Cuda,
                index: Some(0),
                name: "NVIDIA H200".into(),
                memory_bytes: 150_000_000_000,
            },
            Device {
                kind: DeviceKind::Cpu,
                index: None,
                name: "AMD EPYC 9654".into(),
                memory_bytes: 1 << 37,
            },
        ];
        let json = serde_json::to_string(&list).unwrap();
        assert!(
            json.starts_with(r#"[{"kind":"cuda","index":0,"name":"NVIDIA H200","#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Vec<Device>>(&json).unwrap(), list);
    }
}
