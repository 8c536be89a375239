//! The libtorch runtime: CUDA back-end loading, device choice and thread count, and `orbhash info`,
//! which reports them.
//!
//! tch links `libtorch_cuda.so` with `--as-needed`, and since nothing in the binary calls into it
//! directly the linker drops it (tch-rs issue 980): libtorch then never registers its CUDA
//! back-end. Forcing the link instead makes the binary refuse to start on machines without
//! cuBLAS/cuDNN. So the CUDA library is opened at run time with `dlopen` before any tch call;
//! where it cannot be opened, orbhash runs on the CPU and says why, once.

use std::fmt;
use std::str::FromStr;
use std::sync::{Once, OnceLock};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

const CUDA_LIBRARY: &str = "libtorch_cuda.so";

/// Why the CUDA back-end could not be used, or that it can.
#[derive(Debug, Clone)]
pub enum CudaSupport {
    Available { devices: i64 },
    Unavailable { reason: String },
}

impl CudaSupport {
    pub fn is_available(&self) -> bool {
        matches!(self, CudaSupport::Available { .. })
    }
}

static CUDA_SUPPORT: OnceLock<CudaSupport> = OnceLock::new();

/// Loads libtorch's CUDA back-end if it can be loaded and reports whether CUDA is usable.
/// Idempotent and cheap after the first call; call it before any other tch call.
pub fn cuda_support() -> &'static CudaSupport {
    CUDA_SUPPORT.get_or_init(|| match open_cuda_library() {
        Err(reason) => CudaSupport::Unavailable { reason },
        Ok(()) if tch::Cuda::is_available() => CudaSupport::Available {
            devices: tch::Cuda::device_count(),
        },
        Ok(()) => CudaSupport::Unavailable {
            reason: "libtorch's CUDA back-end loaded, but no CUDA device or driver was found"
                .to_string(),
        },
    })
}

fn open_cuda_library() -> Result<(), String> {
    let mut attempts = vec![CUDA_LIBRARY.to_string()];
    if let Some(baked) = option_env!("ORBHASH_LIBTORCH_LIB") {
        attempts.push(format!("{baked}/{CUDA_LIBRARY}"));
    }
    let mut failures = Vec::new();
    for candidate in &attempts {
        // SAFETY: libtorch_cuda's initialisers only register the CUDA back-end with libtorch,
        // which is already loaded (it is a link dependency of this binary).
        match unsafe { Library::open(Some(candidate), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(library) => {
                // The back-end must stay registered for the life of the process.
                std::mem::forget(library);
                return Ok(());
            }
            Err(error) => {
                let error = error.to_string();
                if !failures.contains(&error) {
                    failures.push(error);
                }
            }
        }
    }
    Err(format!(
        "cannot load {CUDA_LIBRARY}: {}",
        failures.join("; ")
    ))
}

/// Where tensors live, as asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, else the CPU (saying why, once).
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => Err(format!(
                "unknown device `{other}` (expected auto, cpu or cuda)"
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device cuda was asked for, but CUDA is not usable: {reason}")]
    CudaUnavailable { reason: String },
}

static CPU_FALLBACK_NOTICE: Once = Once::new();

/// Resolves a device choice to a tch device.
pub fn select_device(choice: DeviceChoice) -> Result<tch::Device, DeviceError> {
    match (choice, cuda_support()) {
        (DeviceChoice::Cpu, _) => Ok(tch::Device::Cpu),
        (_, CudaSupport::Available { .. }) => Ok(tch::Device::Cuda(0)),
        (DeviceChoice::Cuda, CudaSupport::Unavailable { reason }) => {
            Err(DeviceError::CudaUnavailable {
                reason: reason.clone(),
            })
        }
        (DeviceChoice::Auto, CudaSupport::Unavailable { reason }) => {
            CPU_FALLBACK_NOTICE.call_once(|| eprintln!("orbhash: running on the CPU ({reason})"));
            Ok(tch::Device::Cpu)
        }
    }
}

/// `orbhash info`'s options.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Device to run the check convolution on: `auto` (CUDA when usable, else CPU), `cpu` or
    /// `cuda` (fails when CUDA is not usable).
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// `orbhash info`: how this build runs libtorch, proven by one convolution on the chosen device.
pub fn run_info(args: &InfoArgs) -> anyhow::Result<()> {
    println!("orbhash {}", env!("CARGO_PKG_VERSION"));
    println!("training support: yes (libtorch via tch)");
    println!("libtorch threads: {}", tch::get_num_threads());
    match cuda_support() {
        CudaSupport::Available { devices } => {
            println!("cuda available: true ({devices} device(s))");
            println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
        }
        // The reason is printed once, by select_device below.
        CudaSupport::Unavailable { .. } => println!("cuda available: false"),
    }
    let device = select_device(args.device)?;
    let input = tch::Tensor::randn([2, 3, 32, 32], (tch::Kind::Float, device));
    let weight = tch::Tensor::randn([8, 3, 3, 3], (tch::Kind::Float, device));
    let output = input.f_conv2d(&weight, None::<tch::Tensor>, [1, 1], [1, 1], [1, 1], 1)?;
    println!(
        "convolution on {:?}: ok, output {:?}",
        output.device(),
        output.size()
    );
    Ok(())
}

/// Settles libtorch for a test: the CUDA back-end loaded if present, and one intra-op thread so
/// that tests running in parallel do not oversubscribe the cores.
pub fn init_for_tests() {
    cuda_support();
    tch::set_num_threads(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn convolution_matches_a_hand_computed_sum() {
        init_for_tests();
        // A 3x3 kernel of ones over a 4x4 ramp gives each output the sum of its 3x3 window.
        let input = Tensor::arange(16, (Kind::Float, tch::Device::Cpu)).view([1, 1, 4, 4]);
        let weight = Tensor::ones([1, 1, 3, 3], (Kind::Float, tch::Device::Cpu));
        let output = input.conv2d(&weight, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        assert_eq!(output.size(), vec![1, 1, 2, 2]);
        let values: Vec<f32> = output.flatten(0, -1).try_into().expect("float tensor");
        // Window at (0,0): 0+1+2+4+5+6+8+9+10 = 45; each step right adds 9, each step down 36.
        assert_eq!(values, vec![45.0, 54.0, 81.0, 90.0]);
    }

    #[test]
    fn device_choice_parses_and_refuses_unknown_names() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
        let error = "tpu"
            .parse::<DeviceChoice>()
            .expect_err("tpu is not a device");
        assert!(error.contains("tpu"), "{error}");
    }

    #[test]
    fn cuda_is_used_when_present_and_refused_cleanly_when_absent() {
        init_for_tests();
        match cuda_support() {
            CudaSupport::Available { devices } => {
                assert!(*devices >= 1);
                assert_eq!(
                    select_device(DeviceChoice::Auto).ok(),
                    Some(tch::Device::Cuda(0))
                );
            }
            CudaSupport::Unavailable { reason } => {
                println!("skipping the GPU half of this test: {reason}");
                assert_eq!(
                    select_device(DeviceChoice::Auto).ok(),
                    Some(tch::Device::Cpu)
                );
                let error = select_device(DeviceChoice::Cuda).expect_err("no CUDA here");
                assert!(error.to_string().contains("not usable"), "{error}");
            }
        }
    }
}
