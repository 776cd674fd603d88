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

#[cfg(test)]
mod tests {
    use super::*;

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
