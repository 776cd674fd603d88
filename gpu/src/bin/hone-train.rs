//! `hone-train`: the training engine's command line — the thin IO edge
//! around `hone-gpu`. Events go to standard output, one JSON object per
//! line; errors to standard error with exit status 1. SIGTERM (or SIGINT)
//! finishes the current step, writes a checkpoint and exits 0; running the
//! same command again resumes from it.
//!
//!   hone-train train --model models/hone-demo --train train.jsonl \
//!       [--validation validation.jsonl] [--config train.toml] --out runs/1
//!   hone-train evaluate --model DIR [--adapter DIR] --test test.jsonl [--base]
//!   hone-train export --model DIR [--adapter DIR] [--merged OUT] \
//!       [--gguf FILE --gguf-type f16|q8_0]
//!   hone-train estimate --model DIR [--config train.toml]
//!   hone-train serve --model DIR [--nf4] [--adapter-budget BYTES]
//!   hone-train devices
//!
//! A failed `train` ends its event stream with a `failed` event whose
//! `cause` says who can fix it: `user` for the settings and the data,
//! `system` for everything else.

use anyhow::{bail, Context};
use burn::backend::{Autodiff, Flex};
use clap::{Parser, Subcommand};
use hone_dataset::tokens::ChatTokenizer;
use hone_gpu::data::DataError;
use hone_gpu::data::{prepare, DataOptions};
use hone_gpu::model::Model;
use hone_gpu::qlora::{QuantBackend, QuantConfig};
use hone_gpu::safetensors::Weights;
use hone_gpu::train::{train_in, Method, Run, TrainConfig, TrainError};
use hone_gpu::{ConfigError, ModelConfig};
use hone_protocol::{Cause, Event};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "hone-train", about = "Hone's training engine")]
struct Cli {
    #[arg(long, value_enum, default_value = "auto", global = true)]
    device: DeviceChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune a model folder on a split file; resumes from --out.
    Train {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        train: PathBuf,
        #[arg(long)]
        validation: Option<PathBuf>,
        /// Settings (TOML, or JSON by extension) with Hugging Face names.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Stop as SIGTERM does (finish the step, checkpoint, exit 0) when
        /// standard input closes: a supervisor that holds the other end
        /// stops the run by closing it, and the run stops by itself when
        /// the supervisor dies, however it dies.
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
    /// Score a model (with an adapter) on a test split; prints the report.
    Evaluate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        test: PathBuf,
        /// Also answer with the base model (--model's weights without the
        /// adapter), for comparison.
        #[arg(long)]
        base: bool,
        /// Compare with this model folder instead (a full fine-tune's
        /// base); implies --base.
        #[arg(long)]
        base_model: Option<PathBuf>,
        /// At most this many new tokens per answer; 0: per example, its
        /// reference's length, a quarter more and 8 (at most 1024).
        #[arg(long, default_value_t = 0)]
        max_new_tokens: usize,
        /// End answers at this text too (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Hold the base as NF4, as QLoRA trained it (double quantization,
        /// blocks of 64).
        #[arg(long)]
        nf4: bool,
        /// The bootstrap's seed: the same seed, the same intervals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Bootstrap resamples for the 95 % intervals.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        resamples: u32,
        /// Write the report here (atomically) instead of standard output.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print progress events (JSON lines) on standard output.
        #[arg(long)]
        progress: bool,
    },
    /// Memory a training run needs (JSON), from config.json and the
    /// training settings; reads no weights.
    Estimate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Fold an adapter into the base and write a Hugging Face folder
    /// and/or a GGUF file (llama.cpp, Ollama). Without --adapter, --model
    /// itself is exported (a full fine-tune's folder).
    Export {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// A new (or empty) folder for the merged Hugging Face model.
        #[arg(long)]
        merged: Option<PathBuf>,
        /// A GGUF file to write (repeatable, each with its --gguf-type).
        #[arg(long)]
        gguf: Vec<PathBuf>,
        /// The GGUF weights' type: f16, or q8_0 (8-bit blocks of 32); one
        /// per --gguf, in order (f16 where fewer are given).
        #[arg(long)]
        gguf_type: Vec<hone_gpu::gguf::GgufType>,
        /// `general.name` in the GGUF file (default: the model folder's name).
        #[arg(long)]
        name: Option<String>,
        /// Merge into the NF4-quantized base the adapter was trained on
        /// (QLoRA), dequantized to f32, instead of the original weights.
        #[arg(long)]
        nf4: bool,
    },
    /// The compute devices here (JSON array): each usable NVIDIA GPU, then
    /// the CPU.
    Devices,
    /// Serve a base model and its adapters: requests in on standard input
    /// and replies out on standard output, one JSON object per line each
    /// (`hone_protocol::serve`), until standard input closes.
    Serve {
        #[arg(long)]
        model: PathBuf,
        /// Hold the base as NF4 (for QLoRA adapters).
        #[arg(long)]
        nf4: bool,
        /// The most adapter bytes held at once; the least recently used
        /// goes first (one is always held).
        #[arg(long, default_value_t = 1 << 30)]
        adapter_budget: u64,
    },
}

/// `--device`: where to compute.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DeviceChoice {
    /// An NVIDIA GPU when this binary has CUDA support and a driver is
    /// present, else the CPU.
    Auto,
    Cpu,
    /// An NVIDIA GPU or an error: never falls back to the CPU (for jobs
    /// and benchmarks that must not crawl on the CPU unnoticed).
    Cuda,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn tokenizer(dir: &Path) -> anyhow::Result<ChatTokenizer> {
    let bytes = std::fs::read(dir.join("tokenizer.json"))
        .with_context(|| format!("{} has no tokenizer.json", dir.display()))?;
    let config = std::fs::read(dir.join("tokenizer_config.json")).ok();
    let template = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
    Ok(ChatTokenizer::from_files(
        &bytes,
        config.as_deref(),
        template.as_deref(),
    )?)
}

fn load<Bk: QuantBackend>(
    dir: &Path,
    quant: Option<QuantConfig>,
    device: &Bk::Device,
) -> anyhow::Result<(ModelConfig, Model<Bk>)> {
    let config = ModelConfig::from_json(&read(&dir.join("config.json"))?)?;
    let model = Model::load_quantized(&config, &Weights::open(dir)?, quant, device)?;
    Ok((config, model))
}

/// Settings from a TOML or JSON file (by extension), else the defaults.
fn train_config(path: Option<&Path>) -> anyhow::Result<TrainConfig> {
    Ok(match path {
        Some(p) => TrainConfig::parse(&read(p)?, p.extension().is_some_and(|e| e == "json"))?,
        None => TrainConfig::default(),
    })
}

/// The id batches are padded with: the config's pad token, else EOS, else 0.
fn pad_id(dir: &Path, config: &ModelConfig) -> u32 {
    let v: serde_json::Value = read(&dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    v.get("pad_token_id")
        .and_then(serde_json::Value::as_u64)
        .map(|n| n as u32)
        .or(config.eos_token_ids.first().copied())
        .unwrap_or(0)
}

fn lora_of(adapter: &Path) -> anyhow::Result<hone_gpu::model::LoraConfig> {
    let v: serde_json::Value = serde_json::from_str(&read(&adapter.join("adapter_config.json"))?)?;
    let targets = v["target_modules"]
        .as_array()
        .context("adapter_config.json: no target_modules")?
        .iter()
        .filter_map(|t| t.as_str().and_then(hone_gpu::model::Target::from_name))
        .collect();
    Ok(hone_gpu::model::LoraConfig {
        r: v["r"].as_u64().context("adapter_config.json: no r")? as usize,
        alpha: v["lora_alpha"]
            .as_f64()
            .context("adapter_config.json: no lora_alpha")?,
        dropout: 0.0,
        targets,
        rslora: v["use_rslora"].as_bool().unwrap_or(false),
        seed: 0,
    })
}

/// Who can fix `e`: the settings (including an unsupported model's
/// `config.json`) and the data are the user's; the files, the machine and
/// the engine are not.
fn cause(e: &anyhow::Error) -> Cause {
    for source in e.chain() {
        if let Some(t) = source.downcast_ref::<TrainError>() {
            return t.cause();
        }
        if source.is::<ConfigError>() || source.is::<DataError>() {
            return Cause::User;
        }
    }
    Cause::System
}

#[allow(clippy::print_stdout)]
fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HONE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Devices) {
        // Before choosing a compute device: listing must not log a choice.
        match serde_json::to_string_pretty(&hone_gpu::device::devices()) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("hone-train: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let training = matches!(cli.command, Command::Train { .. });
    let compute = match cli.device {
        DeviceChoice::Cuda => hone_gpu::device::gpu().unwrap_or_else(|why| {
            eprintln!("hone-train: --device cuda: no usable NVIDIA GPU: {why}");
            std::process::exit(1);
        }),
        choice => hone_gpu::device::choose(matches!(choice, DeviceChoice::Auto)),
    };
    if compute != hone_gpu::device::Compute::Cpu {
        tracing::info!("computing on {compute}");
    }
    let gpu = compute != hone_gpu::device::Compute::Cpu;
    let result = match compute {
        #[cfg(feature = "cuda")]
        hone_gpu::device::Compute::Cuda(i) => {
            run::<burn::backend::Cuda>(cli.command, burn::backend::cuda::CudaDevice::new(i), gpu)
        }
        _ => run::<Flex>(cli.command, Default::default(), gpu),
    };
    if let Err(e) = result {
        eprintln!("hone-train: {e:#}");
        if training {
            // The event stream ends with why, for whoever follows it.
            let failed = Event::Failed {
                reason: format!("{e:#}"),
                cause: cause(&e),
            };
            println!("{}", serde_json::to_string(&failed).unwrap_or_default());
        }
        std::process::exit(1);
    }
}

#[allow(clippy::print_stdout)]
/// `gpu`: `device` is a GPU (matrix products default to bf16 there).
fn run<E: QuantBackend>(command: Command, device: E::Device, gpu: bool) -> anyhow::Result<()> {
    match command {
        Command::Train {
            model,
            train,
            validation,
            config,
            out,
            stop_on_stdin_eof,
        } => {
            let cfg = train_config(config.as_deref())?;
            let (mc, base) = load::<Autodiff<E>>(&model, cfg.quant(), &device)?;
            let tok = tokenizer(&model)?;
            let opts = DataOptions {
                max_len: cfg.max_seq_length,
                all_tokens: cfg.train_on_all_tokens,
            };
            let train_data = prepare(&read(&train)?, &tok, opts)?;
            let valid = match &validation {
                Some(v) => Some(prepare(&read(v)?, &tok, opts)?),
                None => None,
            };
            let net = match cfg.method {
                Method::Lora | Method::Qlora => base.with_lora(&cfg.lora()?, &device),
                Method::Full => base,
            }
            .with_bf16(cfg.bf16_compute(gpu)?);
            let cancel = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(signal, cancel.clone())?;
            }
            if stop_on_stdin_eof {
                let flag = cancel.clone();
                std::thread::spawn(move || {
                    // Whatever arrives is ignored; the end (or an error) stops.
                    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                    tracing::info!("standard input closed: stopping at the end of this step");
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                });
            }
            let run = Run {
                dir: &out,
                cancel: &cancel,
            };
            let stdout = std::io::stdout();
            let trained = train_in(
                net,
                &train_data,
                valid.as_ref(),
                &cfg,
                pad_id(&model, &mc),
                &device,
                Some(&run),
                &mut |e| {
                    let mut lock = stdout.lock();
                    let _ = writeln!(lock, "{}", serde_json::to_string(e).unwrap_or_default());
                    let _ = lock.flush();
                },
            )?;
            if cfg.method.adapters() {
                hone_gpu::export::save_peft_adapter(
                    &trained,
                    &cfg.lora()?,
                    &model.display().to_string(),
                    &out.join("adapter"),
                )?;
            } else if !cancel.load(std::sync::atomic::Ordering::SeqCst) {
                // A finished full fine-tune is a Hugging Face folder of its own.
                hone_gpu::export::save_merged(&trained, &model, &out.join("model"))?;
            }
            Ok(())
        }
        Command::Evaluate {
            model,
            adapter,
            test,
            base,
            base_model,
            max_new_tokens,
            stop,
            nf4,
            seed,
            resamples,
            report,
            progress,
        } => {
            let quant = nf4.then(QuantConfig::default);
            let (mc, plain) = load::<E>(&model, quant, &device)?;
            let tuned = match &adapter {
                Some(a) => hone_gpu::export::load_adapter(plain, &lora_of(a)?, a, &device)?,
                None => plain,
            };
            let base_model = match (&base_model, base) {
                (Some(dir), _) => Some(load::<E>(dir, quant, &device)?.1),
                (None, true) => Some(load::<E>(&model, quant, &device)?.1),
                (None, false) => None,
            };
            let opts = hone_gpu::evaluate::EvalOptions {
                max_len: mc.max_position_embeddings,
                sampling: hone_gpu::generate::Sampling {
                    max_new_tokens,
                    stop_ids: mc.eos_token_ids.clone(),
                    ..Default::default()
                },
                stop_strings: stop,
                pad_id: pad_id(&model, &mc),
                seed,
                resamples,
            };
            let mut on_progress = |done: usize, total: usize| {
                if progress {
                    let line = serde_json::to_string(&Event::Evaluating {
                        done: done as u64,
                        total: total as u64,
                    })
                    .unwrap_or_default();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                }
            };
            let result = hone_gpu::evaluate::evaluate_split(
                &tuned,
                base_model.as_ref(),
                &tokenizer(&model)?,
                &read(&test)?,
                &opts,
                &device,
                &mut on_progress,
            )
            .map_err(anyhow::Error::msg)?;
            let json = serde_json::to_string_pretty(&result)?;
            match report {
                Some(path) => hone_gpu::export::write_atomic(&path, json.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{json}"),
            }
            Ok(())
        }
        Command::Estimate { model, config } => {
            let cfg = train_config(config.as_deref())?;
            let mc = ModelConfig::from_json(&read(&model.join("config.json"))?)?;
            let e = hone_gpu::estimate::estimate(&mc, &cfg, cfg.bf16_compute(gpu)?)?;
            println!("{}", serde_json::to_string_pretty(&e)?);
            Ok(())
        }
        // Answered in `main`, before a device is chosen.
        Command::Devices => Ok(()),
        Command::Serve {
            model,
            nf4,
            adapter_budget,
        } => serve::<E>(&model, nf4, adapter_budget, device),
        Command::Export {
            model,
            adapter,
            merged,
            gguf,
            gguf_type,
            name,
            nf4,
        } => {
            if merged.is_none() && gguf.is_empty() {
                bail!("say what to write: --merged FOLDER and/or --gguf FILE");
            }
            if let Some(m) = &merged {
                if m.exists() && m.read_dir()?.next().is_some() {
                    bail!("{} is not empty; choose a new folder", m.display());
                }
            }
            let config = ModelConfig::from_json(&read(&model.join("config.json"))?)?;
            if gguf_type.len() > gguf.len() {
                bail!(
                    "{} --gguf-type for {} --gguf files",
                    gguf_type.len(),
                    gguf.len()
                );
            }
            if !gguf.is_empty() {
                // Refuse before loading any weight.
                let json: serde_json::Value =
                    serde_json::from_str(&read(&model.join("config.json"))?)?;
                hone_gpu::gguf::architecture(&json)?;
            }
            let (_, plain) = load::<E>(&model, nf4.then(QuantConfig::default), &device)?;
            let merged_model = match &adapter {
                Some(a) => hone_gpu::export::merge_adapters(hone_gpu::export::load_adapter(
                    plain,
                    &lora_of(a)?,
                    a,
                    &device,
                )?),
                None => plain,
            };
            if let Some(m) = &merged {
                hone_gpu::export::save_merged(&merged_model, &model, m)?;
            }
            let name = name.unwrap_or_else(|| {
                model
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into())
            });
            for (i, g) in gguf.iter().enumerate() {
                let ty = gguf_type
                    .get(i)
                    .copied()
                    .unwrap_or(hone_gpu::gguf::GgufType::F16);
                hone_gpu::gguf::write_gguf(&merged_model, &config, &model, g, ty, &name)?;
            }
            Ok(())
        }
    }
}

/// `hone-train serve`: loads the base, says `ready`, then answers the
/// requests standard input brings until it closes.
fn serve<E: QuantBackend>(
    model: &Path,
    nf4: bool,
    budget: u64,
    device: E::Device,
) -> anyhow::Result<()> {
    use hone_protocol::serve::{ErrorCode, Reply, Request};
    use std::io::BufRead;
    let quant = nf4.then(QuantConfig::default);
    let (mc, base) = load::<E>(model, quant, &device)?;
    let tok = tokenizer(model)?;
    // One line each, whole: the reader thread writes refusals too.
    fn write(r: &Reply) {
        let line = serde_json::to_string(r).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // Nobody reads the replies any more: the supervisor is gone.
            std::process::exit(0);
        }
    }
    write(&Reply::Ready {
        model: model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        context: mc.max_position_embeddings,
    });
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Request>(&line) {
                Ok(r) => {
                    if tx.send(r).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let id = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    write(&Reply::Error {
                        id,
                        code: ErrorCode::InvalidRequest,
                        message: format!("not a request: {e}"),
                    });
                }
            }
        }
    });
    let adapter_settings = |dir: &Path| -> Result<hone_gpu::model::LoraConfig, String> {
        lora_of(dir).map_err(|e| format!("{e:#}"))
    };
    let mut service =
        hone_gpu::serve::Service::new(base, mc, tok, device, budget, &adapter_settings);
    service.run(&rx, &mut |r| write(r));
    Ok(())
}
