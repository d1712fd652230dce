//! The firmware examples (`firmware-examples/`) on emulated boards: the generated `edge` model
//! on an Arm MPS2 AN386 (Cortex-M4F) and AN500 (Cortex-M7) in int8 and f32, and on QEMU's
//! RISC-V `virt` board (rv32imac) in int8 (and f32 in soft float), must give the host's
//! results (`models::edge_samples`) bit for bit.
//!
//! Each example runs with `cargo run --release` in its folder (the runner is QEMU, see its
//! `.cargo/config.toml`), first with its default features, then once per model variant alone
//! (`--no-default-features --features <dtype>`) for the per-variant sizes. On the Cortex-M4F
//! the int8 model also runs with the scalar kernels (`int8,reference`: the runtime's
//! `force-reference`), so that both int8 paths, `SMLAD` and scalar, are proven bit-exact
//! under QEMU, and the `layers` builds (DSP and scalar) time each int8 convolution of `edge`
//! alone (on the DSP path also with requantisation constants over the whole range the
//! quantiser produces) and check the DSP kernels against the reference on odd shapes and
//! values.
//!
//! The test parses the firmware's output (results, instruction counts, peak stack, the int8
//! path compiled in) and the ELF (section and symbol sizes, read by the small ELF32 reader
//! below), checks the `edge` int8 budget on the Cortex-M4F (weights + model code <= 64 KiB,
//! static RAM + peak stack <= 48 KiB) and writes the measurements as markdown tables to
//! `firmware-examples/target/firmware-report.md` (`scripts/firmware-report.sh` prints it).
//! Instruction counts are reported, never asserted beyond plausibility: they are benchmarks.
//!
//! QEMU (`qemu-system-arm`, `qemu-system-riscv32`) must be installed, and `defmt-print` for
//! the defmt example (scripts/test.sh installs both): a missing tool is a failure, not a skip.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use models::edge;
use models::edge_samples as samples;

/// One example board.
struct Board {
    /// Folder under `firmware-examples/`, package and binary name.
    name: &'static str,
    cpu: &'static str,
    triple: &'static str,
    qemu: &'static str,
    /// The builds run, in order.
    builds: &'static [Build],
    /// A note for the table's f32 rows.
    note: &'static str,
}

/// One build of an example and what its output must show.
struct Build {
    /// `--no-default-features --features <these>`, or `None` for the default features.
    features: Option<&'static str>,
    /// Model variants it runs.
    dtypes: &'static [&'static str],
    /// The int8 convolution path it must report (`int8_path=`): `dsp` (`SMLAD`, Cortex-M4/M7)
    /// or `reference` (scalar).
    int8_path: &'static str,
    /// One model variant alone: a row of the size and instruction table.
    row: bool,
    /// Runs the per-layer measurement and the kernel checks (feature `layers`).
    layers: bool,
}

const fn build(
    features: Option<&'static str>,
    dtypes: &'static [&'static str],
    int8_path: &'static str,
    row: bool,
    layers: bool,
) -> Build {
    Build {
        features,
        dtypes,
        int8_path,
        row,
        layers,
    }
}

const BOARDS: [Board; 3] = [
    Board {
        name: "mps2-an386",
        cpu: "Cortex-M4F",
        triple: "thumbv7em-none-eabihf",
        qemu: "qemu-system-arm",
        builds: &[
            build(None, &["int8", "f32"], "dsp", false, false),
            build(Some("int8"), &["int8"], "dsp", true, false),
            build(Some("int8,reference"), &["int8"], "reference", true, false),
            build(Some("f32"), &["f32"], "dsp", true, false),
            build(Some("layers"), &["int8"], "dsp", false, true),
            // With the scalar kernels this run outlasts a period of the 24-bit SysTick:
            // the elapsed total then checks the wrap handling.
            build(
                Some("layers,reference"),
                &["int8"],
                "reference",
                false,
                true,
            ),
        ],
        note: "",
    },
    Board {
        name: "mps2-an500",
        cpu: "Cortex-M7",
        triple: "thumbv7em-none-eabihf",
        qemu: "qemu-system-arm",
        builds: &[
            build(None, &["int8", "f32"], "dsp", false, false),
            build(Some("int8"), &["int8"], "dsp", true, false),
            build(Some("f32"), &["f32"], "dsp", true, false),
        ],
        note: "",
    },
    Board {
        name: "riscv-virt",
        cpu: "RV32IMAC",
        triple: "riscv32imac-unknown-none-elf",
        qemu: "qemu-system-riscv32",
        builds: &[
            build(None, &["int8"], "reference", false, false),
            build(Some("int8"), &["int8"], "reference", true, false),
            build(Some("f32"), &["f32"], "reference", true, false),
        ],
        note: " (soft float)",
    },
];

/// `edge` int8 on the Cortex-M4F: weights + model code, and static RAM + peak stack.
const FLASH_BUDGET: u64 = 64 * 1024;
const RAM_BUDGET: u64 = 48 * 1024;

/// One cargo run (build + QEMU) at most; a cold build of one example takes well under this.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("firmware-examples")
}

#[test]
fn firmware_examples_reproduce_the_host_bit_for_bit_on_emulated_boards() {
    let started = Instant::now();
    require_qemu();
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let mut layers = Vec::new();
    let mut requants = Vec::new();
    for board in &BOARDS {
        for b in board.builds {
            let what = format!(
                "{} ({})",
                board.name,
                b.features.unwrap_or("default features")
            );
            let run = cargo_run(board, b.features);
            let errors = check_run(board, b, &run);
            let ok = errors.is_empty();
            failures.extend(errors.into_iter().map(|f| format!("{what}: {f}")));
            if ok && b.row {
                match measure(board, b, &run) {
                    Ok(row) => rows.push(row),
                    Err(e) => failures.push(format!("{what}: {e}")),
                }
            }
            if ok && b.layers {
                match layer_rows(b, &run) {
                    Ok((l, r)) => {
                        layers.extend(l);
                        requants.extend(r);
                    }
                    Err(e) => failures.push(format!("{what}: {e}")),
                }
            }
        }
    }
    let report = report(&rows, &layers, &requants, &mut failures);
    let path = firmware_dir().join("target/firmware-report.md");
    std::fs::write(&path, &report).expect("writing the report");
    println!("{report}");
    println!(
        "firmware test: {} runs in {:.0} s; report in {}",
        BOARDS.iter().map(|b| b.builds.len()).sum::<usize>(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    assert!(
        failures.is_empty(),
        "firmware examples failed:\n{}",
        failures.join("\n")
    );
}

/// The README's "into your own firmware" path, compiled and run as a user would
/// (`firmware-examples/minimal`: its own memory.x, build.rs, runner; the blob's length from
/// the file; errors handled in `main() -> !`): it builds without a warning and prints the
/// host's int8 estimate of the first golden sample bit for bit.
#[test]
fn the_minimal_firmware_example_builds_cleanly_and_matches_the_host() {
    require_qemu();
    let mut cmd = firmware_cargo_run("minimal");
    // Cargo replays a cached crate's warnings, so a warm build shows them too.
    let (status, stdout, stderr) =
        run_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("minimal: {e}"));
    assert!(
        status == Some(0),
        "minimal example failed (exit {status:?}):\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("warning:"), "the example warns:\n{stderr}");
    let f =
        fields(&stdout, "estimate", None).unwrap_or_else(|| panic!("no estimate line:\n{stdout}"));
    let bits = |k: &str| u32::from_str_radix(f[k].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(
        [bits("log_mass_bits"), bits("sigma_bits")],
        samples::INT8[0],
        "{stdout}"
    );
}

/// The embedded engineer's defmt path (`firmware-examples/minimal-defmt`: the runtime's
/// feature `defmt`, defmt frames over semihosting, decoded by the example's runner with
/// `defmt-print` against the ELF): it builds without a warning, and the decoded log shows the
/// host's int8 estimate of the first golden sample bit for bit (defmt prints an f32 in its
/// shortest round-trip form) with the host's flags, and the runtime's errors with the same
/// messages as their `Display`.
#[test]
fn the_defmt_firmware_example_logs_the_host_estimate_and_errors() {
    use models::blobs::EDGE_INT8;
    require_qemu();
    require_defmt_print();
    let mut cmd = firmware_cargo_run("minimal-defmt");
    let (status, log, stderr) =
        run_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("minimal-defmt: {e}"));
    assert!(
        status == Some(0),
        "minimal-defmt failed (exit {status:?}):\n--- log\n{log}\n--- stderr\n{stderr}"
    );
    assert!(!stderr.contains("warning:"), "the example warns:\n{stderr}");
    // The host's answers to the same blob and inputs.
    let model = edge::int8::Model::new(&EDGE_INT8.0).unwrap();
    let mut arena = vec![0i8; edge::ARENA_LEN];
    let arena: &mut [i8; edge::ARENA_LEN] = (&mut arena[..]).try_into().unwrap();
    let scratch = &mut edge::int8::Scratch::new();
    let counts = samples::counts(0).unwrap();
    let z = samples::REDSHIFT[0];
    let host = model.infer(counts, &[z], arena, scratch).unwrap();
    assert_eq!(
        [host.log_mass.to_bits(), host.sigma.to_bits()],
        samples::INT8[0]
    );
    let refused_input = model
        .infer(counts, &[f32::NAN], arena, scratch)
        .unwrap_err();
    let truncated = edge::int8::Model::new(&EDGE_INT8.0[..EDGE_INT8.0.len() - 16]).unwrap_err();
    // `INFO  estimate Estimate { log_mass: 13.663961, sigma: 0.15892588, flags: few_counts }`
    let fields: BTreeMap<&str, &str> = log
        .lines()
        .find_map(|l| l.split_once("estimate Estimate { ")?.1.split_once(" }"))
        .unwrap_or_else(|| panic!("no decoded estimate in the log:\n{log}"))
        .0
        .split(", ")
        .filter_map(|kv| kv.split_once(": "))
        .collect();
    let float = |k: &str| -> u32 {
        let v = fields
            .get(k)
            .unwrap_or_else(|| panic!("no `{k}` in {fields:?}"));
        v.parse::<f32>()
            .unwrap_or_else(|_| panic!("`{k}: {v}` is not an f32"))
            .to_bits()
    };
    assert_eq!(
        [float("log_mass"), float("sigma")],
        samples::INT8[0],
        "the decoded estimate differs from the host's:\n{log}"
    );
    assert_eq!(
        fields.get("flags").copied(),
        Some(host.flags.to_string().as_str()),
        "{log}"
    );
    for want in [
        format!("refused: Input({refused_input})"),
        format!("refused: Blob({truncated})"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(&want)),
            "no `{want}` in the decoded log:\n{log}"
        );
    }
}

/// The exposure-aware `edge` model on the Cortex-M4F (`firmware-examples/exposure-aware`):
/// every golden sample with its redshift and exposure gives the host's exported results bit
/// for bit in int8 and f32, with the flags the host's generated code sets on the same inputs
/// (training ranges, detection check); the device refuses NaN, infinite, zero and negative
/// exposures with a typed error, flags exposures outside the training range, and a longer
/// exposure lowers the estimate of the same counts.
#[test]
fn the_exposure_aware_firmware_matches_the_host() {
    use models::blobs::{EDGE_AWARE_F32, EDGE_AWARE_INT8};
    use models::edge_aware as aware;
    use models::edge_aware_samples as asamples;
    require_qemu();
    let mut cmd = firmware_cargo_run("exposure-aware");
    let (status, out, stderr) =
        run_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("exposure-aware: {e}"));
    assert!(
        status == Some(0) && out.lines().any(|l| l == "FIRMWARE PASS"),
        "exposure-aware failed (exit {status:?}):\n--- stdout\n{out}\n--- stderr\n{stderr}"
    );
    assert!(!stderr.contains("warning:"), "the example warns:\n{stderr}");
    let i8m = aware::int8::Model::new(&EDGE_AWARE_INT8.0).unwrap();
    let f32m = aware::f32::Model::new(&EDGE_AWARE_F32.0).unwrap();
    let mut a8 = vec![0i8; aware::ARENA_LEN];
    let mut af = vec![0f32; aware::ARENA_LEN];
    let mut s8 = Box::new(aware::int8::Scratch::new());
    let mut sf = Box::new(aware::f32::Scratch::new());
    let hex = |v: &str| u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap();
    let mut seen = 0;
    for line in out.lines().filter(|l| l.starts_with("sample ")) {
        let f: BTreeMap<String, String> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let i: usize = num(&f, "index").unwrap();
        let s = asamples::SCALARS[i];
        assert_eq!(
            [hex(&f["z_bits"]), hex(&f["exposure_bits"])],
            [s[0].to_bits(), s[1].to_bits()],
            "{line}"
        );
        let counts = asamples::counts(i).unwrap();
        let (golden, host) = match f["dtype"].as_str() {
            "int8" => (
                asamples::INT8[i],
                i8m.infer(counts, &s, (&mut a8[..]).try_into().unwrap(), &mut s8),
            ),
            "f32" => (
                asamples::F32[i],
                f32m.infer(counts, &s, (&mut af[..]).try_into().unwrap(), &mut sf),
            ),
            other => panic!("unknown dtype {other}: {line}"),
        };
        let bits: Vec<u32> = f["bits"].split(',').map(hex).collect();
        assert_eq!(bits, golden, "device vs exported host results: {line}");
        let host = host.unwrap();
        assert_eq!(
            num::<u16>(&f, "flags").unwrap(),
            host.flags.0,
            "flags: {line}"
        );
        seen += 1;
    }
    assert_eq!(seen, 2 * asamples::N, "{out}");
    for name in ["bad-exposure", "outside-training", "exposure-moves-mass"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("check name={name} ")) && l.ends_with(" ok")),
            "check {name}:\n{out}"
        );
    }
}

/// The on-board event binner (`firmware-examples/event-binner`, Cortex-M4F): each golden
/// sample's cube becomes a shuffled event stream on the device, `runtime::events::Binner`
/// bins it into a u8 and a u16 cube, and the `edge` model runs on them. For every sample,
/// count type and model variant the device's cube must be the golden cube (the binned count
/// is checked here against the golden cube's own sum), every injected off-stamp and
/// off-band event refused as such, and the estimate the host's bit for bit; the device's
/// checks of NaN and infinite events (typed errors) and of u8 / u16 saturation (flagged)
/// must pass. Runs the DSP build (int8 and f32) and the scalar int8 build, and reports the
/// RAM of each path: static RAM plus the peak stack, which holds the cube, the binner and the
/// model's arena (`firmware-examples/target/event-binner-report.md`).
#[test]
fn the_event_binner_firmware_bins_the_golden_events_and_infers_like_the_host() {
    require_qemu();
    let golden: Vec<u64> = (0..samples::N)
        .map(|i| {
            samples::counts(i)
                .expect("golden sample")
                .iter()
                .map(|&c| u64::from(c))
                .sum()
        })
        .collect();
    let mut failures = Vec::new();
    let mut table = String::from(
        "| int8 kernels | count type | dtype | input cube | static RAM | peak stack (cube, binner, arena, frames) | RAM total | events / sample | stream + binning instructions / sample | of which the stream | binner instructions / event (pushes timed alone) | inference instructions |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for (features, dtypes, path) in [
        (None, &["int8", "int8-in-place", "f32"][..], "dsp"),
        (
            Some("int8,reference"),
            &["int8", "int8-in-place"][..],
            "reference",
        ),
    ] {
        let what = format!("event-binner ({})", features.unwrap_or("default features"));
        let mut cmd = firmware_cargo_run("event-binner");
        if let Some(f) = features {
            cmd.args(["--no-default-features", "--features", f]);
        }
        let (status, out, stderr) =
            run_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            status == Some(0) && out.lines().any(|l| l == "FIRMWARE PASS"),
            "{what} failed (exit {status:?}):\n--- stdout\n{out}\n--- stderr\n{stderr}"
        );
        let mut fail = |e: String| failures.push(format!("{what}: {e}"));
        match fields(&out, "event-binner", None) {
            Some(f) if f.get("int8_path").map(String::as_str) == Some(path) => {}
            other => fail(format!("header: {other:?}, expected int8_path={path}")),
        }
        let checks: Vec<&str> = out.lines().filter(|l| l.starts_with("check ")).collect();
        for name in ["bad-events", "saturation-u8", "saturation-u16"] {
            match checks.iter().find(|l| l.contains(&format!("name={name} "))) {
                Some(l) if l.ends_with(" ok") => {}
                other => fail(format!("check {name}: {other:?}")),
            }
        }
        let elf = firmware_dir().join("target/thumbv7em-none-eabihf/release/event-binner");
        let static_ram = match Elf::read(&elf) {
            Ok(e) => e.sizes().static_ram,
            Err(e) => {
                fail(format!("{}: {e}", elf.display()));
                0
            }
        };
        for &dtype in dtypes {
            for &(count, width) in &[("u8", 1u64), ("u16", 2)] {
                let tag = format!("count={count} dtype={dtype}");
                let mut seen = 0;
                for line in out.lines().filter(|l| l.starts_with("binned ")) {
                    let f: BTreeMap<String, String> = line
                        .split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    if f.get("count").map(String::as_str) != Some(count)
                        || f.get("dtype").map(String::as_str) != Some(dtype)
                    {
                        continue;
                    }
                    let i: usize = match num(&f, "cluster") {
                        Ok(i) if i < samples::N => i,
                        _ => {
                            fail(format!("bad line: {line}"));
                            continue;
                        }
                    };
                    let get = |k: &str| num::<u64>(&f, k).unwrap_or(u64::MAX);
                    let expected_bits = host(dtype.trim_end_matches("-in-place"))[i];
                    let bits = f
                        .get("bits")
                        .and_then(|b| b.split_once(','))
                        .and_then(|(a, b)| {
                            Some([
                                u32::from_str_radix(a, 16).ok()?,
                                u32::from_str_radix(b, 16).ok()?,
                            ])
                        });
                    let ok = get("binned") == golden[i]
                        && get("saturated") == 0
                        && get("invalid") == 0
                        && get("outside_stamp") == get("injected_stamp")
                        && get("outside_bands") == get("injected_bands")
                        && get("events")
                            == golden[i] + get("injected_stamp") + get("injected_bands")
                        && get("injected_stamp") > 0
                        && get("injected_bands") > 0
                        && f.get("cube").map(String::as_str) == Some("identical")
                        && bits == Some(expected_bits);
                    if ok {
                        seen += 1;
                    } else {
                        fail(format!(
                            "{tag} cluster {i} (golden {} counts, host bits {:08x},{:08x}): {line}",
                            golden[i], expected_bits[0], expected_bits[1]
                        ));
                    }
                }
                if seen != samples::N {
                    fail(format!("{tag}: {seen} of {} samples right", samples::N));
                }
                let s = match out
                    .lines()
                    .filter_map(|l| l.strip_prefix("events-summary "))
                    .find(|l| l.contains(&format!("{tag} ")))
                {
                    Some(l) => l
                        .split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                    None => {
                        fail(format!("no `events-summary {tag}` line"));
                        continue;
                    }
                };
                let cube = width * edge::INPUT_LEN as u64;
                let get = |k: &str| num::<u64>(&s, k).unwrap_or(0);
                let peak = get("stack_peak");
                // The cube and the arena are both on the stack of the measured call (in place,
                // the arena is inside the cube).
                let floor = if dtype == "int8-in-place" {
                    cube
                } else {
                    cube + arena_bytes(dtype)
                };
                if get("cube_bytes") != cube || !(floor..floor + 48 * 1024).contains(&peak) {
                    fail(format!(
                        "{tag}: cube_bytes={} stack_peak={peak}, expected a {cube} B cube and a peak of at least {floor} B",
                        get("cube_bytes")
                    ));
                }
                let events = get("events_mean");
                let (bin, stream) = (
                    get("bin_instructions_mean"),
                    get("stream_instructions_mean"),
                );
                let _ = writeln!(
                    table,
                    "| {} | {count} | {dtype} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    if dtype.starts_with("int8") {
                        if path == "dsp" {
                            "DSP (`SMLAD`)"
                        } else {
                            "scalar"
                        }
                    } else {
                        "-"
                    },
                    n(cube),
                    n(static_ram),
                    n(peak),
                    n(static_ram + peak),
                    n(events),
                    n(bin),
                    n(stream),
                    s.get("push_instructions_per_event")
                        .map_or("?", String::as_str),
                    n(get("infer_instructions_mean")),
                );
            }
        }
    }
    let path = firmware_dir().join("target/event-binner-report.md");
    std::fs::create_dir_all(firmware_dir().join("target")).expect("target directory");
    std::fs::write(&path, &table).expect("writing the report");
    println!("{table}");
    assert!(
        failures.is_empty(),
        "event binner firmware failed:\n{}",
        failures.join("\n")
    );
}

/// Fail (never skip) when an emulator is missing.
fn require_qemu() {
    let mut emulators: Vec<&str> = BOARDS.iter().map(|b| b.qemu).collect();
    emulators.dedup();
    for qemu in emulators {
        let found = Command::new(qemu)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{qemu}` not found: the firmware examples run in QEMU. Install it with \
             `apt-get install qemu-system-arm qemu-system-misc` (Debian bookworm; with \
             bookworm-backports QEMU: `apt-get install -t bookworm-backports qemu-system-arm \
             qemu-system-riscv`)"
        );
    }
}

/// Fail (never skip) when the defmt decoder the `minimal-defmt` runner pipes into is missing.
fn require_defmt_print() {
    let found = Command::new("defmt-print")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`defmt-print` not found: the minimal-defmt example's runner decodes its log with it. \
         Install it with `cargo install defmt-print --locked --version 1.2.0` (scripts/test.sh does)"
    );
}

/// What one `cargo run` gave.
struct Run {
    stdout: String,
    elf: PathBuf,
}

/// `cargo run --release` in the example's folder, with the default features or only the
/// given ones. Panics if cargo or QEMU fail or time out (output included).
fn cargo_run(board: &Board, features: Option<&str>) -> Run {
    let target_dir = firmware_dir().join("target");
    let mut cmd = firmware_cargo_run(board.name);
    if let Some(f) = features {
        cmd.args(["--no-default-features", "--features", f]);
    }
    let what = format!(
        "`cargo run --release{}` in firmware-examples/{}",
        features
            .map(|f| format!(" --no-default-features --features {f}"))
            .unwrap_or_default(),
        board.name
    );
    let (status, stdout, stderr) =
        run_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        status == Some(0),
        "{what} failed (exit {status:?}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    Run {
        stdout,
        elf: target_dir
            .join(board.triple)
            .join("release")
            .join(board.name),
    }
}

/// `cargo run --release --locked` in `firmware-examples/<example>`, into the shared target
/// directory. The examples' own `.cargo/config.toml` sets target, runner and rustflags;
/// flags meant for the outer build must not override them.
fn firmware_cargo_run(example: &str) -> Command {
    let dir = firmware_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir.join(example))
        .args(["run", "--release", "--locked", "--target-dir"])
        .arg(dir.join("target"));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Run `cmd` to completion or kill it after `timeout`: (exit code, stdout, stderr).
fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(Option<i32>, String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            // `cargo run` replaces itself with the runner, so this is QEMU (or the build).
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {} s:\n{}\n{}",
                timeout.as_secs(),
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok((
        status.code(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

/// `key=value` fields of the first line starting with `tag ` (and, when given, whose
/// `dtype=` field is `dtype`).
fn fields(stdout: &str, tag: &str, dtype: Option<&str>) -> Option<BTreeMap<String, String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        })
        .find(|f| dtype.is_none_or(|d| f.get("dtype").is_some_and(|v| v == d)))
}

fn num<T: std::str::FromStr>(f: &BTreeMap<String, String>, key: &str) -> Result<T, String> {
    f.get(key)
        .ok_or_else(|| format!("no `{key}=`"))?
        .parse()
        .map_err(|_| format!("`{key}={}` is not a number", f[key]))
}

/// The host's results of a variant.
fn host(dtype: &str) -> [[u32; 2]; samples::N] {
    match dtype {
        "int8" => samples::INT8,
        "f32" => samples::F32,
        "f16" => samples::F16,
        _ => panic!("unknown variant {dtype}"),
    }
}

/// Arena bytes of a variant on the boards (the arena is on the stack): `ARENA_LEN` as a
/// bare-metal build has it, where `infer` streams the first convolution's input
/// (`runtime::model::STREAM_INPUT`), so [`edge::ARENA_STREAMED`], not the host's.
fn arena_bytes(dtype: &str) -> u64 {
    (edge::ARENA_STREAMED * if dtype.starts_with("int8") { 1 } else { 4 }) as u64
}

/// Everything the output of one run must show; the problems found.
fn check_run(board: &Board, build: &Build, run: &Run) -> Vec<String> {
    let dtypes = build.dtypes;
    let out = &run.stdout;
    let mut errors = Vec::new();
    let mut fail = |e: String| errors.push(e);
    if !out.lines().any(|l| l == "FIRMWARE PASS") {
        fail(format!("no `FIRMWARE PASS` line:\n{out}"));
    }
    match fields(out, "firmware", None) {
        Some(f) if f.get("board").map(String::as_str) == Some(board.name) => {
            if num::<usize>(&f, "macs") != Ok(edge::MACS) {
                fail(format!(
                    "MACs differ from models::edge::MACS = {}",
                    edge::MACS
                ));
            }
            // The int8 convolutions take the path this build is for.
            if f.get("int8_path").map(String::as_str) != Some(build.int8_path) {
                fail(format!(
                    "int8_path={:?}, expected {}",
                    f.get("int8_path"),
                    build.int8_path
                ));
            }
        }
        _ => fail(format!("no `firmware board={}` line", board.name)),
    }
    // The timer counts instructions: the calibration loop's known count must come out.
    match fields(out, "calibration", None) {
        Some(f) => {
            let ratio = num::<f64>(&f, "instructions_per_tick");
            let nominal = num::<f64>(&f, "nominal");
            match (ratio, nominal) {
                (Ok(r), Ok(n)) if (r - n).abs() <= 0.005 * n => {}
                other => fail(format!(
                    "calibration off (instructions per tick, nominal): {other:?}"
                )),
            }
        }
        None => fail("no `calibration` line".into()),
    }
    // The ELF and the firmware's own view of its sections agree.
    match (Elf::read(&run.elf), fields(out, "sizes", None)) {
        (Ok(elf), Some(f)) => {
            for name in ["text", "rodata"] {
                let elf_size = elf.section_size(&format!(".{name}"));
                if num::<u64>(&f, name).ok() != Some(elf_size) {
                    fail(format!(
                        "sizes {name}={:?} but the ELF's .{name} is {elf_size}",
                        f.get(name)
                    ));
                }
            }
        }
        (Err(e), _) => fail(format!("{}: {e}", run.elf.display())),
        (_, None) => fail("no `sizes` line".into()),
    }
    let mut inferences = 0;
    for &dtype in dtypes {
        let expected = host(dtype);
        let mut seen = 0;
        for line in out.lines() {
            let Some(rest) = line.strip_prefix("cluster ") else {
                continue;
            };
            if !line.contains(&format!("[{dtype}]")) {
                continue;
            }
            let i: usize = match rest.split(':').next().and_then(|s| s.parse().ok()) {
                Some(i) if i < samples::N => i,
                _ => {
                    fail(format!("bad cluster line: {line}"));
                    continue;
                }
            };
            let bits = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bits="))
                .and_then(|b| b.split_once(','))
                .and_then(|(a, b)| {
                    Some([
                        u32::from_str_radix(a, 16).ok()?,
                        u32::from_str_radix(b, 16).ok()?,
                    ])
                });
            match bits {
                Some(b) if b == expected[i] => seen += 1,
                Some(b) => fail(format!(
                    "{dtype} cluster {i}: [log_mass, sigma] bits {:08x},{:08x} but the host has {:08x},{:08x} ({} vs {}, {} vs {})",
                    b[0],
                    b[1],
                    expected[i][0],
                    expected[i][1],
                    f32::from_bits(b[0]),
                    f32::from_bits(expected[i][0]),
                    f32::from_bits(b[1]),
                    f32::from_bits(expected[i][1]),
                )),
                None => fail(format!("no bits in: {line}")),
            }
        }
        if seen != samples::N {
            fail(format!(
                "{dtype}: {seen} of {} clusters identical to the host",
                samples::N
            ));
        }
        let Some(s) = fields(out, "summary", Some(dtype)) else {
            fail(format!("no `summary dtype={dtype}` line"));
            continue;
        };
        if num::<usize>(&s, "identical") != Ok(samples::N) {
            fail(format!(
                "{dtype}: summary says identical={:?}",
                s.get("identical")
            ));
        }
        // Plausible for the timer: at least one instruction per two MACs (`SMLAD` does two),
        // and not absurdly many. A plausibility check of the measurement, not a speed target.
        let macs = edge::MACS as u64;
        match num::<u64>(&s, "instructions_mean") {
            Ok(n) if (macs / 2..=1000 * macs).contains(&n) => {}
            other => fail(format!("{dtype}: implausible instructions_mean {other:?}")),
        }
        // Where the core counts retired instructions (RISC-V `minstret`), that count and the
        // timer's agree to the timer's resolution.
        if s.contains_key("instret_mean") {
            match (
                num::<u64>(&s, "instret_mean"),
                num::<u64>(&s, "instructions_mean"),
                num::<u64>(&s, "resolution"),
            ) {
                (Ok(a), Ok(b), Ok(r)) if a.abs_diff(b) <= 2 * r => {}
                other => fail(format!("{dtype}: instret and timer disagree: {other:?}")),
            }
        }
        if let Ok(n) = num::<u64>(&s, "instructions_mean") {
            inferences += n * samples::N as u64;
        }
        // The arena is on the stack: the peak holds it plus a few frames.
        let arena = arena_bytes(dtype);
        match num::<u64>(&s, "stack_peak") {
            Ok(n) if (arena..arena + 32 * 1024).contains(&n) => {}
            other => fail(format!(
                "{dtype}: implausible stack_peak {other:?} (arena {arena} B)"
            )),
        }
    }
    if build.layers {
        match check_layers(build, out) {
            Ok(n) => inferences += n,
            Err(e) => fail(e),
        }
    }
    // The whole run is at least the sum of its measured parts. The M4F's scalar `layers` run
    // outlasts a 24-bit SysTick period (671 M instructions): a lost wrap would make it
    // shorter than its parts.
    match fields(out, "elapsed", None).map(|f| num::<u64>(&f, "instructions")) {
        Some(Ok(n)) if n >= inferences => {}
        other => fail(format!(
            "elapsed instructions {other:?} below the measured parts' sum {inferences} (timer wrap lost?)"
        )),
    }
    errors
}

/// The `edge` int8 convolutions measured alone (`layer` lines of a `layers` build).
struct Layer {
    name: String,
    shape: String,
    path: String,
    macs: u64,
    /// `s8_rows` over the whole map.
    rows: u64,
    /// `s8` (always the scalar reference).
    reference: u64,
    /// MACs of the 2-rows-a-call and fused-pooling measurements (the rows a 2 x 2 pool keeps).
    pooled_macs: u64,
    /// `s8_rows` two output rows a call.
    pairs: u64,
    /// `s8_pooled::<2>`.
    pooled: u64,
}

fn parse_layers(out: &str) -> Result<Vec<Layer>, String> {
    let mut layers = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("layer ") else {
            continue;
        };
        let f: BTreeMap<String, String> = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text = |k: &str| f.get(k).cloned().ok_or(format!("no `{k}=` in: {line}"));
        if f.get("identical").map(String::as_str) != Some("yes") {
            return Err(format!("a layer differs from the reference: {line}"));
        }
        layers.push(Layer {
            name: text("name")?,
            shape: text("shape")?,
            path: text("path")?,
            macs: num(&f, "macs")?,
            rows: num(&f, "rows_instructions")?,
            reference: num(&f, "reference_instructions")?,
            pooled_macs: num(&f, "pooled_macs")?,
            pairs: num(&f, "pairs_instructions")?,
            pooled: num(&f, "pooled_instructions")?,
        });
    }
    Ok(layers)
}

/// One `edge` convolution with one requantisation variant (`requant` lines of a DSP
/// `layers` build).
struct RequantRow {
    layer: String,
    variant: String,
    macs: u64,
    /// `s8_rows` over the whole map.
    rows: u64,
    pooled_macs: u64,
    /// `s8_rows` two output rows a call.
    pairs: u64,
}

/// The requantisation variants a DSP `layers` run times on each of the three convolutions
/// (firmware-examples/common/src/layers.rs, `VARIANTS`), with what they are for the report.
const REQUANT_VARIANTS: [(&str, &str); 6] = [
    (
        "half",
        "multipliers in [0.5, 1) (no shift), negative side a tenth",
    ),
    (
        "above-one",
        "multipliers 1 to 16 (left shifts 1 to 4), negative side a tenth",
    ),
    (
        "tiny",
        "multipliers 1e-9 to 5e-8 (right shifts 24 to 29), negative side a tenth",
    ),
    ("zero", "zero multipliers"),
    (
        "mixed",
        "per channel and side, each of: typical, [0.5, 1), 1 to 16, tiny, zero",
    ),
    (
        "leaky-negative-side",
        "typical positive side; negative side [0.5, 1), 1 to 16, tiny or zero",
    ),
];

fn parse_requants(out: &str) -> Result<Vec<RequantRow>, String> {
    let mut rows = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("requant ") else {
            continue;
        };
        let f: BTreeMap<String, String> = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text = |k: &str| f.get(k).cloned().ok_or(format!("no `{k}=` in: {line}"));
        if f.get("identical").map(String::as_str) != Some("yes") {
            return Err(format!(
                "a requantisation variant differs from the reference: {line}"
            ));
        }
        // Some outputs are values, not only the clamp: the comparison checks the arithmetic.
        if num::<u64>(&f, "unsaturated")? == 0 {
            return Err(format!("every output saturated: {line}"));
        }
        rows.push(RequantRow {
            layer: text("layer")?,
            variant: text("variant")?,
            macs: num(&f, "macs")?,
            rows: num(&f, "rows_instructions")?,
            pooled_macs: num(&f, "pooled_macs")?,
            pairs: num(&f, "pairs_instructions")?,
        });
    }
    Ok(rows)
}

/// A `layers` run: the three convolutions of `edge` identical to the reference on the
/// build's path, on the DSP path also with every requantisation variant, every kernel check
/// passed. Returns the instructions measured.
fn check_layers(build: &Build, out: &str) -> Result<u64, String> {
    let layers = parse_layers(out)?;
    let requants = parse_requants(out)?;
    let expected = if build.int8_path == "dsp" {
        layers.len() * REQUANT_VARIANTS.len()
    } else {
        0
    };
    if requants.len() != expected {
        return Err(format!(
            "{} `requant` lines, expected {expected}",
            requants.len()
        ));
    }
    if layers.len() != 3 {
        return Err(format!("{} `layer` lines, expected 3", layers.len()));
    }
    let mut measured = 0;
    for l in &layers {
        if l.path != build.int8_path {
            return Err(format!(
                "layer {} ran path={}, expected {}",
                l.name, l.path, build.int8_path
            ));
        }
        // Plausibility of the measurement (not a speed target): at least one instruction per
        // two MACs.
        for (what, n, macs) in [
            ("rows", l.rows, l.macs),
            ("reference", l.reference, l.macs),
            ("pairs", l.pairs, l.pooled_macs),
            ("pooled", l.pooled, l.pooled_macs),
        ] {
            if n < macs / 2 || n > 1000 * macs {
                return Err(format!(
                    "layer {}: implausible {what} instructions {n} for {macs} MACs",
                    l.name
                ));
            }
        }
        measured += l.rows + l.reference + l.pairs + l.pooled;
    }
    for r in &requants {
        if !layers.iter().any(|l| l.name == r.layer)
            || !REQUANT_VARIANTS.iter().any(|(v, _)| *v == r.variant)
        {
            return Err(format!(
                "unexpected `requant` line {} {}",
                r.layer, r.variant
            ));
        }
        for (what, n, macs) in [("rows", r.rows, r.macs), ("pairs", r.pairs, r.pooled_macs)] {
            if n < macs / 2 || n > 1000 * macs {
                return Err(format!(
                    "requant {} {}: implausible {what} instructions {n} for {macs} MACs",
                    r.layer, r.variant
                ));
            }
        }
        measured += r.rows + r.pairs;
    }
    for line in out.lines().filter(|l| l.starts_with("check ")) {
        if !line.ends_with("identical=yes") {
            return Err(format!("kernel check failed: {line}"));
        }
    }
    match fields(out, "layers", None) {
        Some(f)
            if num::<u64>(&f, "failed") == Ok(0)
                && num::<u64>(&f, "checks").is_ok_and(|n| n > 3) => {}
        other => return Err(format!("bad `layers` summary: {other:?}")),
    }
    Ok(measured)
}

/// The per-layer measurements of a `layers` run, labelled with the build's int8 path, and
/// its requantisation variants.
fn layer_rows(build: &Build, run: &Run) -> Result<(Vec<Layer>, Vec<RequantRow>), String> {
    let layers = parse_layers(&run.stdout)?;
    if layers.iter().any(|l| l.path != build.int8_path) {
        return Err("path mismatch".into());
    }
    Ok((layers, parse_requants(&run.stdout)?))
}

/// One row of the table: a board running one variant alone.
struct Row {
    board: &'static str,
    cpu: &'static str,
    dtype: &'static str,
    /// The int8 path of the build (`dsp` or `reference`).
    path: &'static str,
    note: &'static str,
    flash: u64,
    weights: u64,
    samples: u64,
    model_code: u64,
    other_code: u64,
    static_ram: u64,
    stack_peak: u64,
    instructions: u64,
    per_mac: f64,
}

fn measure(board: &Board, build: &Build, run: &Run) -> Result<Row, String> {
    let dtype = build.dtypes[0];
    let elf = Elf::read(&run.elf)?;
    let s = fields(&run.stdout, "summary", Some(dtype)).ok_or("no summary")?;
    let sizes = elf.sizes();
    let instructions: u64 = num(&s, "instructions_mean")?;
    if sizes.weights == 0 || sizes.samples == 0 || sizes.model_code == 0 {
        return Err(format!(
            "weights ({} B), samples ({} B) or model code ({} B) not found in the ELF's symbols",
            sizes.weights, sizes.samples, sizes.model_code
        ));
    }
    Ok(Row {
        board: board.name,
        cpu: board.cpu,
        dtype,
        path: build.int8_path,
        note: if dtype == "f32" { board.note } else { "" },
        flash: sizes.flash,
        weights: sizes.weights,
        samples: sizes.samples,
        model_code: sizes.model_code,
        other_code: sizes.flash - sizes.weights - sizes.samples - sizes.model_code,
        static_ram: sizes.static_ram,
        stack_peak: num(&s, "stack_peak")?,
        instructions,
        per_mac: instructions as f64 / edge::MACS as f64,
    })
}

/// Thousands separators.
fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Thousands separators with a sign.
fn signed(v: i64) -> String {
    let s = n(v.unsigned_abs());
    if v < 0 { format!("-{s}") } else { s }
}

/// The int8 kernels of a row, as the table shows them.
fn kernels(r: &Row) -> &'static str {
    if r.dtype == "int8" && r.path == "dsp" {
        "DSP (`SMLAD`)"
    } else {
        "scalar"
    }
}

/// The markdown report; adds a failure if the Cortex-M4F int8 budget is exceeded.
fn report(
    rows: &[Row],
    layers: &[Layer],
    requants: &[RequantRow],
    failures: &mut Vec<String>,
) -> String {
    let mut t = String::new();
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    let _ = writeln!(
        t,
        "`edge` ({} MACs per inference) on {qemu}, `-icount shift=0`; one model variant per build (`--no-default-features --features <dtype>`, plus `reference` for the scalar int8 kernels). Bytes.\n",
        n(edge::MACS as u64)
    );
    let _ = writeln!(
        t,
        "| board | CPU | dtype | int8 kernels | flash total | weights | samples | code | of which model | of which board + fmt | static RAM | peak stack | RAM total | instructions / inference | instructions / MAC |"
    );
    let _ = writeln!(
        t,
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            r.board,
            r.cpu,
            r.dtype,
            r.note,
            if r.dtype == "int8" { kernels(r) } else { "-" },
            n(r.flash),
            n(r.weights),
            n(r.samples),
            n(r.model_code + r.other_code),
            n(r.model_code),
            n(r.other_code),
            n(r.static_ram),
            n(r.stack_peak),
            n(r.static_ram + r.stack_peak),
            n(r.instructions),
            r.per_mac,
        );
    }
    let m4 = |path: &str| {
        rows.iter()
            .find(|r| r.board == "mps2-an386" && r.dtype == "int8" && r.path == path)
    };
    if let (Some(scalar), Some(dsp)) = (m4("reference"), m4("dsp")) {
        let _ = writeln!(
            t,
            "\n`edge` int8 on the Cortex-M4F, whole inference: scalar {} instructions ({:.2} / MAC), DSP {} ({:.2} / MAC): {:.1} times fewer. The DSP build has {} B more model code and {} B more peak stack.",
            n(scalar.instructions),
            scalar.per_mac,
            n(dsp.instructions),
            dsp.per_mac,
            scalar.instructions as f64 / dsp.instructions.max(1) as f64,
            signed(dsp.model_code as i64 - scalar.model_code as i64),
            signed(dsp.stack_peak as i64 - scalar.stack_peak as i64),
        );
    }
    let scalar: Vec<&Layer> = layers.iter().filter(|l| l.path == "reference").collect();
    let dsp: Vec<&Layer> = layers.iter().filter(|l| l.path == "dsp").collect();
    if !dsp.is_empty() && scalar.len() == dsp.len() {
        let _ = writeln!(
            t,
            "\nEach int8 convolution of `edge` alone on the Cortex-M4F (`--features layers` and `layers,reference`; synthetic data, which the counts do not depend on). Whole map: one `s8_rows` call, im2col and requantisation included. 2 rows a call: `s8_rows` as `s8_pooled::<2>` calls it (the last row of an odd map, which the pool drops, not computed). Fused: `s8_pooled::<2>`, the convolution plus pooling the line buffer.\n"
        );
        let _ = writeln!(
            t,
            "| layer | input : output channels | MACs | scalar instructions | scalar / MAC | DSP instructions | DSP / MAC | scalar / DSP | DSP / MAC, 2 rows a call | DSP / MAC, fused with 2x2 pool |"
        );
        let _ = writeln!(t, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        let per = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        let mut sum = [0u64; 6];
        for (s, d) in scalar.iter().zip(&dsp) {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {:.2} | {} | {:.3} | {:.1} | {:.3} | {:.3} |",
                d.name,
                d.shape,
                n(d.macs),
                n(s.rows),
                per(s.rows, s.macs),
                n(d.rows),
                per(d.rows, d.macs),
                per(s.rows, d.rows),
                per(d.pairs, d.pooled_macs),
                per(d.pooled, d.pooled_macs),
            );
            for (a, v) in
                sum.iter_mut()
                    .zip([d.macs, s.rows, d.rows, d.pooled_macs, d.pairs, d.pooled])
            {
                *a += v;
            }
        }
        let _ = writeln!(
            t,
            "| all three | | {} | {} | {:.2} | {} | {:.3} | {:.1} | {:.3} | {:.3} |",
            n(sum[0]),
            n(sum[1]),
            per(sum[1], sum[0]),
            n(sum[2]),
            per(sum[2], sum[0]),
            per(sum[1], sum[2]),
            per(sum[4], sum[3]),
            per(sum[5], sum[3]),
        );
    }
    if !dsp.is_empty() && !requants.is_empty() {
        let _ = writeln!(
            t,
            "\nThe DSP convolutions by requantisation constants (same `layers` build; per-channel multipliers, small weights and inputs where the multipliers are large, so that outputs are not all saturated; every output checked against the reference). Each output channel takes the cheapest requantisation form whose constants exist for both signs (typical: the calibrated range, 0.002 to 0.012, a tenth on the negative side, and zero multipliers take the fast one). Instructions per MAC, whole map and 2 rows a call:\n"
        );
        let names: Vec<&str> = dsp.iter().map(|l| l.name.as_str()).collect();
        let mut head = String::from("| requantisation |");
        let mut rule = String::from("|---|");
        for what in ["", ", 2 rows a call"] {
            for n in names.iter().copied().chain(["all three"]) {
                let _ = write!(head, " {n}{what} |");
                rule.push_str("--:|");
            }
        }
        let _ = writeln!(t, "{head}\n{rule}");
        let per = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        // (rows, MACs, 2-rows instructions, their MACs) per layer, in `names` order.
        let typical: Vec<_> = dsp
            .iter()
            .map(|l| (l.rows, l.macs, l.pairs, l.pooled_macs))
            .collect();
        let mut variants = vec![(
            "typical".to_string(),
            "calibrated, 0.002 to 0.012".to_string(),
            typical,
        )];
        for (v, what) in REQUANT_VARIANTS {
            let cells: Vec<_> = names
                .iter()
                .filter_map(|n| {
                    requants
                        .iter()
                        .find(|r| r.layer == *n && r.variant == v)
                        .map(|r| (r.rows, r.macs, r.pairs, r.pooled_macs))
                })
                .collect();
            if cells.len() == names.len() {
                variants.push((v.to_string(), what.to_string(), cells));
            }
        }
        for (v, what, cells) in &variants {
            let mut line = format!("| {v}: {what} |");
            let total = cells.iter().fold([0u64; 4], |a, c| {
                [a[0] + c.0, a[1] + c.1, a[2] + c.2, a[3] + c.3]
            });
            for c in cells
                .iter()
                .copied()
                .chain([(total[0], total[1], total[2], total[3])])
            {
                let _ = write!(line, " {:.3} |", per(c.0, c.1));
            }
            for c in cells
                .iter()
                .copied()
                .chain([(total[0], total[1], total[2], total[3])])
            {
                let _ = write!(line, " {:.3} |", per(c.2, c.3));
            }
            let _ = writeln!(t, "{line}");
        }
    }
    match m4("dsp") {
        Some(r) => {
            let flash = r.weights + r.model_code;
            let ram = r.static_ram + r.stack_peak;
            let ok = flash <= FLASH_BUDGET && ram <= RAM_BUDGET;
            let _ = writeln!(
                t,
                "\nBudget, `edge` int8 (DSP kernels) on the Cortex-M4F: weights + model code {} B (at most {} B), static RAM + peak stack {} B (at most {} B, activation arena of {} B on the stack): {}.",
                n(flash),
                n(FLASH_BUDGET),
                n(ram),
                n(RAM_BUDGET),
                n(arena_bytes("int8")),
                if ok { "met" } else { "EXCEEDED" }
            );
            if !ok {
                failures.push(format!(
                    "edge int8 on the Cortex-M4F over budget: flash {flash} B (max {FLASH_BUDGET}), RAM {ram} B (max {RAM_BUDGET})"
                ));
            }
        }
        None => failures.push("no Cortex-M4F int8 measurement for the budget".into()),
    }
    t
}

/// Sizes read from an ELF.
#[derive(Debug, Default)]
struct Sizes {
    /// Loadable bytes: every allocated section with contents (vector table, code, constants,
    /// the initial values of .data).
    flash: u64,
    /// `.data + .bss + .uninit`.
    static_ram: u64,
    /// The weight blob symbols (`models::blobs::EDGE_*`).
    weights: u64,
    /// The embedded sample counts (`models::edge_samples::COUNTS`).
    samples: u64,
    /// Code and constants of the `runtime`, `models`, `libm` and `half` crates and of the
    /// firmware's `variants` module (into which LTO inlines most of the model), weights and
    /// samples excepted.
    model_code: u64,
}

/// The little of ELF32 (little endian) the sizes need: section headers and the symbol table.
struct Elf {
    sections: Vec<Section>,
    symbols: Vec<Symbol>,
}

struct Section {
    name: String,
    kind: u32,
    flags: u32,
    size: u64,
}

struct Symbol {
    name: String,
    value: u32,
    size: u64,
    kind: u8,
    section: u16,
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u32 = 2;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;

impl Elf {
    fn read(path: &Path) -> Result<Self, String> {
        let b = std::fs::read(path).map_err(|e| e.to_string())?;
        if b.get(..4) != Some(b"\x7fELF".as_slice()) || b.get(4) != Some(&1) || b.get(5) != Some(&1)
        {
            return Err("not a little-endian ELF32 file".into());
        }
        let u16_at = |o: usize| -> Result<u16, String> {
            Ok(u16::from_le_bytes(
                b.get(o..o + 2).ok_or("truncated")?.try_into().unwrap(),
            ))
        };
        let u32_at = |o: usize| -> Result<u32, String> {
            Ok(u32::from_le_bytes(
                b.get(o..o + 4).ok_or("truncated")?.try_into().unwrap(),
            ))
        };
        let cstr = |o: usize| -> Result<String, String> {
            let s = b.get(o..).ok_or("bad string offset")?;
            let end = s
                .iter()
                .position(|&c| c == 0)
                .ok_or("unterminated string")?;
            Ok(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        let (shoff, shentsize, shnum, shstrndx) = (
            u32_at(0x20)? as usize,
            u16_at(0x2e)? as usize,
            u16_at(0x30)? as usize,
            u16_at(0x32)? as usize,
        );
        // name, type, flags, addr, offset, size, link, info, addralign, entsize
        let header = |i: usize| -> Result<[u32; 10], String> {
            let mut h = [0; 10];
            for (k, v) in h.iter_mut().enumerate() {
                *v = u32_at(shoff + i * shentsize + 4 * k)?;
            }
            Ok(h)
        };
        let headers = (0..shnum).map(header).collect::<Result<Vec<_>, _>>()?;
        let names = headers.get(shstrndx).ok_or("no section name table")?[4] as usize;
        let mut sections = Vec::new();
        let mut symbols = Vec::new();
        for h in &headers {
            sections.push(Section {
                name: cstr(names + h[0] as usize)?,
                kind: h[1],
                flags: h[2],
                size: h[5] as u64,
            });
            if h[1] == SHT_SYMTAB {
                let strtab = headers
                    .get(h[6] as usize)
                    .ok_or("bad symbol string table")?[4] as usize;
                let (off, size, entsize) = (h[4] as usize, h[5] as usize, (h[9] as usize).max(16));
                for e in (off..off + size).step_by(entsize) {
                    symbols.push(Symbol {
                        name: cstr(strtab + u32_at(e)? as usize)?,
                        value: u32_at(e + 4)?,
                        size: u32_at(e + 8)? as u64,
                        kind: *b.get(e + 12).ok_or("truncated")? & 0xf,
                        section: u16_at(e + 14)?,
                    });
                }
            }
        }
        Ok(Self { sections, symbols })
    }

    fn section_size(&self, name: &str) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.size)
            .sum()
    }

    fn sizes(&self) -> Sizes {
        let mut s = Sizes {
            static_ram: [".data", ".bss", ".uninit"]
                .iter()
                .map(|n| self.section_size(n))
                .sum(),
            ..Sizes::default()
        };
        let in_flash = |i: u16| {
            self.sections.get(i as usize).is_some_and(|sec| {
                sec.flags & SHF_ALLOC != 0 && sec.kind != SHT_NOBITS && sec.name != ".data"
            })
        };
        for sec in &self.sections {
            if sec.flags & SHF_ALLOC != 0 && sec.kind != SHT_NOBITS {
                s.flash += sec.size;
            }
        }
        // Aliases share an address: count each (address, size) once.
        let mut seen = std::collections::BTreeSet::new();
        for sym in &self.symbols {
            if sym.size == 0
                || !matches!(sym.kind, STT_OBJECT | STT_FUNC)
                || !in_flash(sym.section)
                || !seen.insert((sym.value & !1, sym.size))
            {
                continue;
            }
            let path = demangle(&sym.name);
            if path.starts_with("models::blobs::EDGE_") {
                s.weights += sym.size;
            } else if path.starts_with("models::edge_samples::COUNTS") {
                s.samples += sym.size;
            } else if is_model_code(&path) {
                s.model_code += sym.size;
            }
        }
        s
    }
}

/// Whether a demangled symbol belongs to the model: the runtime, the generated model, the
/// math library, or the firmware's `variants` module (including trait impls on its types).
fn is_model_code(path: &str) -> bool {
    if path.starts_with("_R") {
        // v0 mangling (the precompiled `core` uses it; so would our crates if it became the
        // default): the crate names appear as `<len><name>`.
        return [
            "7runtime",
            "6models",
            "4libm",
            "4half",
            "15firmware_common8variants",
        ]
        .iter()
        .any(|p| path.contains(p));
    }
    let path = path.trim_start_matches(['<', '&']);
    [
        "runtime::",
        "models::",
        "libm::",
        "half::",
        "firmware_common::variants::",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// Rust's legacy symbol mangling (`_ZN3foo3bar17h<hash>E`) to `foo::bar`, enough to tell
/// crates apart; other names are returned as they are.
fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts = Vec::new();
    while let Some(len_end) = rest.find(|c: char| !c.is_ascii_digit()) {
        let Ok(len) = rest[..len_end].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(len_end..len_end + len) else {
            break;
        };
        parts.push(part);
        rest = &rest[len_end + len..];
    }
    if parts
        .last()
        .is_some_and(|p| p.len() == 17 && p.starts_with('h'))
    {
        parts.pop();
    }
    let mut out = parts.join("::");
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("..", "::"),
    ] {
        out = out.replace(from, to);
    }
    out.trim_start_matches('_').to_string()
}

/// The firmware workspace has its own lock file: the runtime's numeric dependencies must be
/// the same versions as the host's, or the host's golden results need not carry over.
#[test]
fn firmware_lock_file_matches_the_host_for_the_runtime_dependencies() {
    let versions = |path: &Path| -> BTreeMap<String, Vec<String>> {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut name = None;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("name = ") {
                name = Some(n.trim_matches('"').to_string());
            } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
                out.entry(n)
                    .or_default()
                    .push(v.trim_matches('"').to_string());
            }
        }
        out
    };
    let host = versions(&firmware_dir().parent().unwrap().join("Cargo.lock"));
    let firmware = versions(&firmware_dir().join("Cargo.lock"));
    for krate in ["libm", "half", "heapless"] {
        assert_eq!(
            firmware.get(krate),
            host.get(krate),
            "`{krate}` differs between Cargo.lock and firmware-examples/Cargo.lock: run \
             `cargo update -p {krate} --precise <host version>` in firmware-examples/"
        );
    }
}

#[test]
fn demangles_legacy_rust_symbols() {
    assert_eq!(
        demangle("_ZN6models5blobs9EDGE_INT817h0123456789abcdefE"),
        "models::blobs::EDGE_INT8"
    );
    let p = demangle(
        "_ZN86_$LT$firmware_common..variants..Int8$u20$as$u20$firmware_common..variants..Variant$GT$14infer_measured17h1344fe5c43f6724bE",
    );
    assert_eq!(
        p,
        "<firmware_common::variants::Int8 as firmware_common::variants::Variant>::infer_measured"
    );
    assert!(is_model_code(&p));
    assert!(!is_model_code(&demangle(
        "_ZN4core3fmt5float29float_to_decimal_common_exact17h0123456789abcdefE"
    )));
    assert_eq!(n(1_904_640), "1,904,640");
    assert_eq!(n(640), "640");
}
