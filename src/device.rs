//! `--device auto|cpu|wgpu|cuda` to a Burn [`Device`].
//!
//! `cpu` is Burn's pure-Rust `flex` backend (the fastest CPU backend measured here; see
//! ARCHITECTURE.md). `auto` takes wgpu when its adapter is a hardware GPU, and the CPU
//! otherwise (lavapipe, Vulkan on the CPU, is correct but slower than flex), and logs the choice.

use std::sync::OnceLock;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The device a user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

/// A resolved device and the words that describe it in logs and manifests.
#[derive(Debug, Clone)]
pub struct Selected {
    pub device: Device,
    /// `cpu`, `wgpu` or `cuda`: what `auto` resolved to.
    pub kind: DeviceChoice,
    pub description: String,
}

/// The wgpu runtime initializes once per process; later calls reuse it.
static WGPU: OnceLock<std::result::Result<(Device, String), String>> = OnceLock::new();

fn wgpu() -> &'static std::result::Result<(Device, String), String> {
    WGPU.get_or_init(|| {
        let (device, setup) = Device::wgpu_options()
            .init_with_setup()
            .map_err(|e| e.to_string())?;
        let info = setup.adapter.get_info();
        let description = format!(
            "wgpu {:?} on {} ({:?})",
            setup.backend, info.name, info.device_type
        );
        Ok((device, description))
    })
}

/// Is there a hardware (not CPU) wgpu adapter? Probes without starting Burn's runtime.
fn hardware_adapter() -> Option<String> {
    use burn::tensor::wgpu::wgpu;
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle().with_env());
    let adapters = burn::tensor::read_sync(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.iter().map(|a| a.get_info()).find_map(|i| {
        matches!(
            i.device_type,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        )
        .then(|| format!("{} ({:?})", i.name, i.backend))
    })
}

/// Resolve a choice to a device. Call once per process, before other threads start.
pub fn select(choice: DeviceChoice) -> Result<Selected> {
    let resolved = match choice {
        DeviceChoice::Auto => match hardware_adapter() {
            Some(name) => {
                tracing::info!(adapter = %name, "hardware GPU found");
                DeviceChoice::Wgpu
            }
            None => {
                tracing::info!("no hardware GPU adapter: using the CPU");
                DeviceChoice::Cpu
            }
        },
        c => c,
    };
    // Burn rebuilds loaded optimizer state on `Device::default()`; point it at our choice so
    // it never starts another backend. SAFETY: set before Burn starts any thread of its own.
    let (cpu_name, cpu_device) = cpu_backend();
    let name = match resolved {
        DeviceChoice::Wgpu => "wgpu",
        DeviceChoice::Cuda => "cuda",
        _ => cpu_name,
    };
    unsafe { std::env::set_var("BURN_DEVICE", name) };
    let selected = match resolved {
        DeviceChoice::Wgpu => match wgpu() {
            Ok((device, description)) => Selected {
                device: device.clone(),
                kind: DeviceChoice::Wgpu,
                description: description.clone(),
            },
            Err(message) => {
                return Err(Error::Device {
                    device: "wgpu".into(),
                    message: message.clone(),
                });
            }
        },
        DeviceChoice::Cuda => cuda()?,
        _ => Selected {
            device: cpu_device,
            kind: DeviceChoice::Cpu,
            description: format!("cpu ({cpu_name})"),
        },
    };
    tracing::info!(device = %selected.description, "device selected");
    Ok(selected)
}

/// The CPU backend: flex, or, in a build with the `ndarray` feature and with
/// `SYNTHGEN_CPU_BACKEND=ndarray` set, the deprecated ndarray backend (kept to compare the two:
/// `scripts/cpu-backends.sh`).
fn cpu_backend() -> (&'static str, Device) {
    #[cfg(feature = "ndarray")]
    if std::env::var("SYNTHGEN_CPU_BACKEND").as_deref() == Ok("ndarray") {
        #[allow(deprecated)]
        return ("ndarray", Device::ndarray());
    }
    ("flex", Device::flex())
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Selected> {
    Ok(Selected {
        device: Device::cuda(0),
        kind: DeviceChoice::Cuda,
        description: "cuda:0".into(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Selected> {
    Err(Error::Device {
        device: "cuda".into(),
        message: "this build has no CUDA support; rebuild with `--features cuda`".into(),
    })
}
