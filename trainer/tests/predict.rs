//! `trainer predict`: through a blob it gives the runtime's golden vectors bit for bit;
//! through a burn run, `eval`'s predictions bit for bit; CSV and FITS read back with their
//! columns, units and header; bad models and datasets are refused naming the file; a
//! failed write leaves nothing behind.

use std::path::{Path, PathBuf};
use trainer::data::Dataset;
use trainer::fit::commands;
use trainer::fit::config::Preset;
use trainer::predict::model::ModelDtype;
use trainer::predict::{PredictOptions, PredictSummary, flags};
use trainer::sim::{IMAGE_LEN, SimConfig, Simulator};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn edge_blob(dtype: &str) -> PathBuf {
    workspace().join(format!("models/edge/model-{dtype}.bin"))
}

fn opts(model: &Path, data: &Path, out: &Path) -> PredictOptions {
    PredictOptions {
        model: model.to_path_buf(),
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        model_dtype: None,
        batch: commands::EVAL_BATCH,
        progress: false,
        command: "trainer predict (test)".into(),
    }
}

fn predict(model: &Path, data: &Path, out: &Path) -> anyhow::Result<PredictSummary> {
    trainer::predict::predict(&opts(model, data, out))
}

/// The golden clusters of `models/edge` as a dataset without truth.
fn golden_dataset(dir: &Path) -> PathBuf {
    use models::edge_samples as s;
    let ds = Dataset {
        images: (0..s::N)
            .flat_map(|i| s::counts(i).unwrap().to_vec())
            .collect(),
        redshift: s::REDSHIFT.to_vec(),
        ..Default::default()
    };
    let p = dir.join("golden.npz");
    ds.save(&p).unwrap();
    p
}

/// A FITS catalogue's column.
fn fits_col<T: fitsio::tables::ReadsCol>(path: &Path, name: &str) -> Vec<T> {
    let mut f = fitsio::FitsFile::open(path).unwrap();
    let hdu = f.hdu("CATALOG").unwrap();
    hdu.read_col(&mut f, name).unwrap()
}

/// A CSV catalogue: header lines (without `# `) and records.
fn read_csv(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let text = std::fs::read_to_string(path).unwrap();
    let header = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(String::from)
        .collect();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut r = csv::Reader::from_reader(body.as_bytes());
    let names: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        names,
        [
            "id",
            "ra",
            "dec",
            "z",
            "exposure_s",
            "log_mass",
            "sigma",
            "flags",
            "flag_names"
        ]
    );
    (header, r.records().map(|r| r.unwrap()).collect())
}

/// Every blob of `models/edge` gives its golden vectors bit for bit, in FITS and in CSV.
#[test]
fn blobs_reproduce_the_golden_vectors() {
    use models::edge_samples as s;
    let dir = tempfile::tempdir().unwrap();
    let data = golden_dataset(dir.path());
    for (dtype, golden) in [("f32", &s::F32), ("f16", &s::F16), ("int8", &s::INT8)] {
        let fits = dir.path().join(format!("{dtype}.fits"));
        let sum = predict(&edge_blob(dtype), &data, &fits).unwrap();
        assert_eq!(sum.n, s::N);
        assert_eq!(sum.model, format!("weight blob {dtype}"));
        let mu: Vec<f64> = fits_col(&fits, "log_mass");
        let sigma: Vec<f64> = fits_col(&fits, "sigma");
        let csv = dir.path().join(format!("{dtype}.csv"));
        predict(&edge_blob(dtype), &data, &csv).unwrap();
        let (_, rows) = read_csv(&csv);
        for i in 0..s::N {
            let want = golden[i];
            assert_eq!(
                [(mu[i] as f32).to_bits(), (sigma[i] as f32).to_bits()],
                want,
                "{dtype} cluster {i} (FITS)"
            );
            assert_eq!(f64::from(mu[i] as f32), mu[i], "an f32 result");
            let m: f32 = rows[i][5].parse().unwrap();
            let sg: f32 = rows[i][6].parse().unwrap();
            assert_eq!(
                [m.to_bits(), sg.to_bits()],
                want,
                "{dtype} cluster {i} (CSV)"
            );
        }
    }
    // --model-dtype must agree with the blob.
    let mut o = opts(&edge_blob("int8"), &data, &dir.path().join("x.csv"));
    o.model_dtype = Some(ModelDtype::F32);
    let e = trainer::predict::predict(&o).unwrap_err().to_string();
    assert!(e.contains("model-int8.bin") && e.contains("int8"), "{e}");
}

fn simulate(n: usize, seed: u64, tweak: impl FnOnce(&mut SimConfig)) -> Dataset {
    let mut cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    trainer::generate::generate_dataset(&Simulator::new(cfg), n)
}

/// A short real run (config, state, best weights, calibration sample, model.json).
fn tiny_run(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("train.npz");
    simulate(600, 11, |_| {}).save(&data).unwrap();
    let mut cfg = Preset::Edge.config();
    cfg.train.epochs = 1;
    cfg.train.max_train = 256;
    let run = dir.join("run");
    commands::fit(&cfg, &data, &run, false, false).unwrap();
    (run, data)
}

/// Through the burn run, `predict` gives `eval`'s predictions bit for bit (same clusters,
/// same order), and scoring its file reproduces `eval`'s report; the run's exported blobs
/// are found with --model-dtype, and without model-arch.json through the run two levels up.
#[test]
fn a_run_predicts_what_eval_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (run, data) = tiny_run(dir.path());
    let ev = commands::eval_predictions(&run, Some(&data)).unwrap();
    let test = ev.dataset.subset(&ev.splits.test);
    let test_path = dir.path().join("test.npz");
    test.save(&test_path).unwrap();
    let fits = dir.path().join("burn.fits");
    let sum = predict(&run, &test_path, &fits).unwrap();
    assert_eq!(sum.model, "burn run f32");
    let mu: Vec<f64> = fits_col(&fits, "log_mass");
    let sigma: Vec<f64> = fits_col(&fits, "sigma");
    assert_eq!(mu, ev.mu, "log_mass differs from eval's");
    assert_eq!(sigma, ev.sigma, "sigma differs from eval's");
    // On the whole dataset the test clusters sit in other batches, at other positions: burn's
    // flex backend gives each cluster the same bits whatever its batch (measured; not a
    // promise of burn's), so the rows of the test clusters are eval's too.
    let whole = dir.path().join("whole.fits");
    predict(&run, &data, &whole).unwrap();
    let (wm, ws): (Vec<f64>, Vec<f64>) = (fits_col(&whole, "log_mass"), fits_col(&whole, "sigma"));
    for (k, &i) in ev.splits.test.iter().enumerate() {
        assert_eq!((wm[i], ws[i]), (ev.mu[k], ev.sigma[k]), "test cluster {i}");
    }
    // eval's report, rebuilt from the catalogue, is eval's.
    let (all, detected) = commands::eval(&run, Some(&data)).unwrap();
    let (all2, detected2) =
        commands::score_both(&ev.name, &ev.dataset, &ev.splits, &mu, &sigma).unwrap();
    assert_eq!(
        serde_json::to_string(&(all, detected)).unwrap(),
        serde_json::to_string(&(all2, detected2)).unwrap()
    );
    // The CSV has the same numbers (log_mass is an f32 result, sigma an f64 one).
    let csv = dir.path().join("burn.csv");
    predict(&run, &test_path, &csv).unwrap();
    let (header, rows) = read_csv(&csv);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(f64::from(r[5].parse::<f32>().unwrap()), mu[i]);
        assert_eq!(r[6].parse::<f64>().unwrap(), sigma[i]);
    }
    assert!(
        header.iter().any(|h| h == "model kind: burn run"),
        "{header:?}"
    );
    assert!(
        header
            .iter()
            .any(|h| h.starts_with("training redshift range: 0.05 1.3")),
        "{header:?}"
    );

    // Export the run, then predict from its blobs.
    let export = run.join("export");
    codegen::export::export(
        &run,
        &export,
        &codegen::export::ExportOptions {
            calib: None,
            name: "tiny".into(),
            command: "test".into(),
            samples: 0,
        },
    )
    .unwrap();
    let mut o = opts(&run, &test_path, &dir.path().join("f32.fits"));
    o.model_dtype = Some(ModelDtype::F32);
    trainer::predict::predict(&o).unwrap();
    let mu32: Vec<f64> = fits_col(&o.out, "log_mass");
    let worst = mu32
        .iter()
        .zip(&mu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 2e-4, "f32 blob vs burn: {worst} dex");
    o.model_dtype = Some(ModelDtype::Int8);
    o.out = dir.path().join("int8.fits");
    trainer::predict::predict(&o).unwrap();
    let mu8: Vec<f64> = fits_col(&o.out, "log_mass");
    // Without model-arch.json the run two levels up describes the blob: the same bits.
    std::fs::remove_file(export.join("model-arch.json")).unwrap();
    let again = dir.path().join("int8-fallback.fits");
    let sum = predict(&export.join("model-int8.bin"), &test_path, &again).unwrap();
    assert_eq!(sum.model, "weight blob int8");
    assert_eq!(fits_col::<f64>(&again, "log_mass"), mu8);
    assert_eq!(
        fits_col::<i32>(&again, "flags"),
        fits_col::<i32>(&fits, "flags"),
        "same training range either way"
    );
}

/// Write a dataset as a directory of `.npy` files, with optional catalogue arrays.
fn write_dir(dir: &Path, ds: &Dataset, extra: impl FnOnce(&Path)) {
    use npyz::WriterBuilder;
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join("images.npy")).unwrap();
    let mut w = npyz::WriteOptions::<u16>::new()
        .default_dtype()
        .shape(&[ds.len() as u64, 10, 50, 50])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .unwrap();
    w.extend(ds.images.iter().copied()).unwrap();
    w.finish().unwrap();
    write_npy(&dir.join("redshift.npy"), &ds.redshift);
    extra(dir);
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, v: &[T]) {
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&[v.len() as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn write_strings(path: &Path, v: &[&str]) {
    use npyz::WriterBuilder;
    let width = v.iter().map(|s| s.chars().count()).max().unwrap_or(1);
    let file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<String>::new()
        .dtype(npyz::DType::new_scalar(
            format!("<U{width}").parse().unwrap(),
        ))
        .shape(&[v.len() as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .unwrap();
    for s in v {
        w.push(&s.to_string()).unwrap();
    }
    w.finish().unwrap();
}

/// Catalogue arrays are copied, every flag fires where it should, and both formats carry
/// the columns, units and header (FITS long strings included).
#[test]
fn columns_flags_units_and_header_read_back() {
    let dir = tempfile::tempdir().unwrap();
    // Four clusters: inside the training range; at z 1.4 with 600 s; a saturated one; one
    // near a tile edge. Plus whatever is undetected.
    let inside = simulate(2, 3, |_| {});
    let outside = simulate(2, 4, |c| {
        c.population.z_min = 1.35;
        c.population.z_max = 1.45;
        c.instrument.exposure_s = Some(600.0);
    });
    let mut ds = inside.subset(&[0, 1]);
    ds.images.extend_from_slice(&outside.images);
    ds.redshift.extend_from_slice(&outside.redshift);
    let t = ds.truth.as_mut().unwrap();
    t.exposure_s
        .extend_from_slice(&outside.truth.as_ref().unwrap().exposure_s);
    let exposure = t.exposure_s.clone();
    ds.images[IMAGE_LEN + 1234] = u16::MAX; // cluster 1 saturated
    let data = dir.path().join("survey");
    let ids = ["eRASSU J100000.0+020000", "b", "c", "d"];
    write_dir(&data, &ds, |d| {
        write_strings(&d.join("id.npy"), &ids);
        write_npy(&d.join("ra.npy"), &[150.0f64, 150.5, 151.0, 359.9]);
        write_npy(&d.join("dec.npy"), &[2.0f64, -2.5, 0.0, -89.0]);
        write_npy(&d.join("exposure_s.npy"), &exposure);
        // Half the cutout is 50 pixels x 10 arcsec / 2 = 250 arcsec.
        write_npy(
            &d.join("edge_margin_arcsec.npy"),
            &[1e4f32, 1e4, 250.5, 249.5],
        );
    });
    let fits = dir.path().join("cat.fits");
    let csv = dir.path().join("cat.csv");
    predict(&edge_blob("int8"), &data, &fits).unwrap();
    predict(&edge_blob("int8"), &data, &csv).unwrap();

    let f: Vec<i32> = fits_col(&fits, "flags");
    let undetected = |i: usize| f[i] & flags::UNDETECTED;
    assert_eq!(f[0] & !flags::UNDETECTED, 0, "{f:?}");
    assert_eq!(f[1] & !flags::UNDETECTED, flags::SATURATED, "{f:?}");
    for i in 2..4 {
        let both = flags::Z_OUTSIDE_TRAINING | flags::EXPOSURE_OUTSIDE_TRAINING;
        assert_eq!(f[i] & both, both, "cluster {i}: {f:?}");
    }
    assert_eq!(f[3] & flags::NEAR_EDGE, flags::NEAR_EDGE);
    assert_eq!(f[2] & flags::NEAR_EDGE, 0);
    // The detection flag is the baselines' detection.
    let net =
        trainer::baseline::aperture_counts(&Dataset::load(&data).unwrap(), &Default::default());
    for (i, n) in net.iter().enumerate() {
        assert_eq!(undetected(i) != 0, *n < 50.0, "cluster {i}: {n} net counts");
    }
    assert_eq!(fits_col::<String>(&fits, "id"), ids);
    assert_eq!(fits_col::<f64>(&fits, "ra"), [150.0, 150.5, 151.0, 359.9]);
    assert_eq!(fits_col::<f64>(&fits, "dec"), [2.0, -2.5, 0.0, -89.0]);
    let exp: Vec<f64> = fits_col(&fits, "exposure_s");
    assert_eq!(exp, [1600.0, 1600.0, 600.0, 600.0]);
    let names: Vec<String> = fits_col(&fits, "flag_names");
    assert!(
        names[3].contains("z_outside_training|exposure_outside_training"),
        "{names:?}"
    );
    assert!(names[3].ends_with("near_edge"), "{names:?}");

    // FITS header: units, model, hashes, command.
    let mut ff = fitsio::FitsFile::open(&fits).unwrap();
    let hdu = ff.hdu("CATALOG").unwrap();
    let key = |ff: &mut fitsio::FitsFile, k: &str| hdu.read_key::<String>(ff, k).unwrap();
    let units: Vec<(String, String)> = (1..=9)
        .filter_map(|i| {
            let name = key(&mut ff, &format!("TTYPE{i}"));
            hdu.read_key::<String>(&mut ff, &format!("TUNIT{i}"))
                .ok()
                .map(|u| (name, u))
        })
        .collect();
    let unit = |n: &str| units.iter().find(|(c, _)| c == n).map(|(_, u)| u.as_str());
    assert_eq!(unit("ra"), Some("deg"));
    assert_eq!(unit("dec"), Some("deg"));
    assert_eq!(unit("exposure_s"), Some("s"));
    assert_eq!(unit("log_mass"), Some("log(solMass)"));
    assert_eq!(unit("sigma"), Some("dex"));
    assert_eq!(key(&mut ff, "DTYPE"), "int8");
    assert_eq!(key(&mut ff, "MODELTYP"), "weight blob");
    assert_eq!(key(&mut ff, "ARCHHASH"), "0x194bb2610a3ed2f5");
    let blob = std::fs::read(edge_blob("int8")).unwrap();
    assert_eq!(
        key(&mut ff, "MODELHSH"),
        format!("fnv1a64:{:016x}", runtime::blob::fnv1a64(&blob))
    );
    assert_eq!(hdu.read_key::<i64>(&mut ff, "NCLUST").unwrap(), 4);
    assert_eq!(key(&mut ff, "FLAGBIT3"), "undetected");
    let cards = trainer::fits_table::header_cards(&fits, 1)
        .unwrap()
        .join("\n");
    assert!(
        cards.contains("MODEL   = '") && cards.contains("model-int8.bin"),
        "{cards}"
    );
    assert!(
        cards.contains("HISTORY written by: trainer predict (test)"),
        "{cards}"
    );
    assert!(cards.contains("models/edge/model-arch.json"), "{cards}");

    // CSV: the same rows, empty fields for nothing unknown here, header lines.
    let (header, rows) = read_csv(&csv);
    assert_eq!(&rows[0][0], ids[0]);
    assert_eq!(rows[3][1].parse::<f64>().unwrap(), 359.9);
    let fm: Vec<f64> = fits_col(&fits, "log_mass");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(f64::from(r[5].parse::<f32>().unwrap()), fm[i]);
        assert_eq!(r[7].parse::<i32>().unwrap(), f[i]);
        assert_eq!(&r[8], names[i].as_str());
    }
    for want in [
        "model kind: weight blob",
        "dtype: int8",
        "architecture hash: 0x194bb2610a3ed2f5",
        "command: trainer predict (test)",
        "training redshift range: 0.05 1.3",
        "flag 8: undetected: < 50 net 0.5-2 keV counts in the 400 kpc aperture",
    ] {
        assert!(
            header.iter().any(|h| h == want),
            "{want:?} not in {header:?}"
        );
    }
    assert!(header.iter().any(|h| h.starts_with("model hash: fnv1a64:")));
    assert!(
        header
            .iter()
            .any(|h| h.starts_with("columns: id, ra [deg]"))
    );
}

/// Without catalogue arrays: row indices, empty positions; NaN positions in FITS.
#[test]
fn a_bare_dataset_gets_row_ids_and_unknown_positions() {
    let dir = tempfile::tempdir().unwrap();
    let data = golden_dataset(dir.path());
    let csv = dir.path().join("c.csv");
    predict(&edge_blob("f16"), &data, &csv).unwrap();
    let (header, rows) = read_csv(&csv);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0].to_string(), i.to_string());
        assert!(
            r[1].is_empty() && r[2].is_empty() && r[4].is_empty(),
            "{r:?}"
        );
    }
    // The edge model's export records its training range (simulation configuration).
    assert!(
        header
            .iter()
            .any(|h| h == "training exposure range (s): 1600 1600"),
        "{header:?}"
    );
    let fits = dir.path().join("c.fits");
    predict(&edge_blob("f16"), &data, &fits).unwrap();
    assert!(fits_col::<f64>(&fits, "ra").iter().all(|v| v.is_nan()));
    assert_eq!(fits_col::<String>(&fits, "id"), ["0", "1", "2", "3"]);
}

fn err(model: &Path, data: &Path, out: &Path) -> String {
    format!("{:#}", predict(model, data, out).unwrap_err())
}

/// Foreign, corrupt and mismatched blobs, missing files and bad datasets are refused with
/// the file named; nothing is written.
#[test]
fn bad_models_and_datasets_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = golden_dataset(d);
    let out = d.join("out.csv");
    let copy = |name: &str, bytes: &[u8]| {
        let sub = d.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let p = sub.join("model-int8.bin");
        std::fs::write(&p, bytes).unwrap();
        std::fs::copy(
            workspace().join("models/edge/model-arch.json"),
            sub.join("model-arch.json"),
        )
        .unwrap();
        p
    };
    let blob = std::fs::read(edge_blob("int8")).unwrap();
    // Not a blob at all.
    let e = err(&data, &data, &out);
    assert!(e.contains("golden.npz") && e.contains("bad magic"), "{e}");
    // Corrupted and truncated.
    let mut bad = blob.clone();
    bad[1000] ^= 0x10;
    let p = copy("flipped", &bad);
    let e = err(&p, &data, &out);
    assert!(
        e.contains("flipped/model-int8.bin") && e.contains("checksum"),
        "{e}"
    );
    let p = copy("short", &blob[..blob.len() - 16]);
    let e = err(&p, &data, &out);
    assert!(
        e.contains("short/model-int8.bin") && e.contains("truncated"),
        "{e}"
    );
    // A description of another architecture next to the blob.
    let p = copy("foreign", &blob);
    let arch = p.with_file_name("model-arch.json");
    let mut folded = arch::model::Model::load(workspace().join("codegen/tests/fixtures/edge-e30"))
        .unwrap()
        .fold_batch_norm()
        .unwrap();
    if let arch::model::Op::Dense(dn) = &mut folded.ops[8] {
        dn.slope = 0.2;
    }
    let other =
        arch::load::ArchDescription::of(&folded, "other", "test", None, serde_json::Value::Null);
    std::fs::write(&arch, serde_json::to_vec(&other).unwrap()).unwrap();
    let e = err(&p, &data, &out);
    assert!(
        e.contains("foreign/model-int8.bin")
            && e.contains("foreign/model-arch.json")
            && e.contains("0x194bb2610a3ed2f5")
            && e.contains(&other.arch_hash),
        "{e}"
    );
    // A hand-edited description (its hash no longer matches its layers).
    let mut edited: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("models/edge/model-arch.json")).unwrap(),
    )
    .unwrap();
    edited["slopes"][1] = serde_json::json!(0.3);
    std::fs::write(&arch, serde_json::to_vec(&edited).unwrap()).unwrap();
    let e = err(&p, &data, &out);
    assert!(
        e.contains("foreign/model-arch.json") && e.contains("hash"),
        "{e}"
    );
    // No description anywhere.
    std::fs::remove_file(&arch).unwrap();
    let e = err(&p, &data, &out);
    assert!(
        e.contains("foreign/model-int8.bin") && e.contains("model-arch.json"),
        "{e}"
    );
    // Missing model, missing dataset.
    let e = err(&d.join("nope.bin"), &data, &out);
    assert!(e.contains("nope.bin"), "{e}");
    let e = err(&edge_blob("int8"), &d.join("missing.npz"), &out);
    assert!(e.contains("missing.npz"), "{e}");
    // A run directory that is not one.
    let e = err(d, &data, &out);
    assert!(e.contains("not a run directory"), "{e}");
    // A NaN redshift; an out-of-range ra; a misshapen id array.
    let mut ds = Dataset::load(&data).unwrap();
    ds.redshift[2] = f32::NAN;
    let nan = d.join("nan");
    write_dir(&nan, &ds, |_| {});
    let e = err(&edge_blob("int8"), &nan, &out);
    assert!(
        e.contains("nan") && e.contains("redshift") && e.contains("non-finite"),
        "{e}"
    );
    ds.redshift[2] = 0.5;
    let ra = d.join("ra");
    write_dir(&ra, &ds, |p| {
        write_npy(&p.join("ra.npy"), &[1.0f64, 2.0, 400.0, 3.0])
    });
    let e = err(&edge_blob("int8"), &ra, &out);
    assert!(
        e.contains("ra") && e.contains("`ra`") && e.contains("400"),
        "{e}"
    );
    let ids = d.join("ids");
    write_dir(&ids, &ds, |p| write_strings(&p.join("id.npy"), &["a", "b"]));
    let e = err(&edge_blob("int8"), &ids, &out);
    assert!(e.contains("`id`") && e.contains("[2]"), "{e}");
    // An unknown output format.
    let e = err(&edge_blob("int8"), &data, &d.join("out.txt"));
    assert!(e.contains("out.txt") && e.contains(".csv"), "{e}");
    assert!(!out.exists(), "nothing written");
}

fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial-"))
        .collect()
}

/// A write that fails (target is a directory; a FITS table of non-ASCII ids) leaves no
/// partial file and an existing catalogue untouched.
#[test]
fn a_failed_write_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let golden = golden_dataset(d);
    let ds = Dataset::load(&golden).unwrap();
    let data = d.join("utf8");
    write_dir(&data, &ds, |p| {
        write_strings(&p.join("id.npy"), &["a", "b", "caf\u{e9}", "d"])
    });
    let out = d.join("cat.fits");
    predict(&edge_blob("int8"), &golden, &out).unwrap();
    let before = std::fs::read(&out).unwrap();
    let e = err(&edge_blob("int8"), &data, &out);
    assert!(e.contains("cat.fits") && e.contains("ASCII"), "{e}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the old catalogue stays"
    );
    assert!(partial_files(d).is_empty(), "{:?}", partial_files(d));
    // CSV takes UTF-8 ids.
    predict(&edge_blob("int8"), &data, &d.join("cat.csv")).unwrap();
    // Target is a directory.
    let target = d.join("taken.csv");
    std::fs::create_dir(&target).unwrap();
    let e = err(&edge_blob("int8"), &golden, &target);
    assert!(e.contains("taken.csv"), "{e}");
    // Renaming a finished file onto a directory fails after writing: still nothing left.
    let cat = trainer::predict::Catalogue {
        id: vec!["x".into()],
        ra: vec![f64::NAN],
        dec: vec![f64::NAN],
        z: vec![0.5],
        exposure_s: vec![f64::NAN],
        log_mass: vec![14.0],
        sigma: vec![0.1],
        flags: vec![0],
        header: Vec::new(),
    };
    let fits_dir = d.join("taken.fits");
    std::fs::create_dir(&fits_dir).unwrap();
    assert!(trainer::predict::output::write_csv(&cat, &target).is_err());
    assert!(trainer::predict::output::write_fits(&cat, &fits_dir).is_err());
    assert!(partial_files(d).is_empty(), "{:?}", partial_files(d));
}

/// The command line: `--help` documents the flags; a run records the command in the header.
#[test]
fn the_cli_documents_flags_and_records_its_command() {
    let bin = env!("CARGO_BIN_EXE_trainer");
    let out = std::process::Command::new(bin)
        .args(["predict", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for name in flags::FLAGS.iter().map(|f| f.1) {
        assert!(help.contains(name), "{name} not in --help");
    }
    let dir = tempfile::tempdir().unwrap();
    let data = golden_dataset(dir.path());
    let csv = dir.path().join("c.csv");
    let out = std::process::Command::new(bin)
        .args(["predict", "--quiet", "--out"])
        .arg(&csv)
        .arg(edge_blob("int8"))
        .arg(&data)
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("4 clusters") && msg.contains("clusters/s"),
        "{msg}"
    );
    let (header, _) = read_csv(&csv);
    let cmd = header.iter().find(|h| h.starts_with("command: ")).unwrap();
    assert!(
        cmd.contains("predict --quiet --out") && cmd.contains("model-int8.bin"),
        "{cmd}"
    );
    // A bad argument is one clear line, not a panic.
    let out = std::process::Command::new(bin)
        .args(["predict", "nope.bin"])
        .arg(&data)
        .args(["--out", "x.csv"])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && msg.contains("nope.bin") && !msg.contains("panicked"),
        "{msg}"
    );
}
