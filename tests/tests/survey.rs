//! Survey data in: `simulate --events` then `cutout` must give back the simulator's own
//! cubes count for count; tiles are chosen by their distance to the edge; bad event
//! lists, exposure maps and catalogues are refused with the file, HDU, column and row.

use std::path::{Path, PathBuf};
use trainer::data::Dataset;
use trainer::fits_table::{Column, Key, Table};
use trainer::sim::{IMAGE_LEN, SimConfig, Simulator};
use trainer::survey::catalog::Columns;
use trainer::survey::command::{CutoutOptions, default_skipped, run};
use trainer::survey::sky::Projection;
use trainer::survey::tile::{TileParams, sibling_paths, simulate_tile, write_expmap};

fn sim(seed: u64) -> Simulator {
    Simulator::new(SimConfig {
        seed,
        ..SimConfig::default()
    })
}

fn small_tile() -> TileParams {
    TileParams {
        size_deg: 1.4,
        ..TileParams::default()
    }
}

struct Rehearsal {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    events: PathBuf,
    expmap: PathBuf,
    cat_fits: PathBuf,
    cat_csv: PathBuf,
    sim: Simulator,
    n: usize,
    sky: trainer::data::SkyColumns,
}

fn rehearsal(n: usize) -> Rehearsal {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let sim = sim(11);
    let events = dir.join("tile.fits");
    let pb = indicatif::ProgressBar::hidden();
    let (sky, _, _) = simulate_tile(&sim, n, &small_tile(), &events, &pb).unwrap();
    let (expmap, cat_fits, cat_csv) = sibling_paths(&events);
    Rehearsal {
        _dir: tmp,
        dir,
        events,
        expmap,
        cat_fits,
        cat_csv,
        sim,
        n,
        sky,
    }
}

fn options(
    events: Vec<PathBuf>,
    expmaps: Vec<PathBuf>,
    catalog: &Path,
    out: &Path,
) -> CutoutOptions {
    CutoutOptions {
        events,
        expmaps,
        catalog: catalog.to_path_buf(),
        columns: Columns::default(),
        out: out.to_path_buf(),
        skipped: default_skipped(out),
        config: SimConfig::default(),
    }
}

#[test]
fn cutout_of_a_simulated_tile_reproduces_the_simulator_cubes_exactly() {
    let r = rehearsal(24);
    for catalog in [&r.cat_fits, &r.cat_csv] {
        let out = r.dir.join("cut.npz");
        let s = run(
            &options(
                vec![r.events.clone()],
                vec![r.expmap.clone()],
                catalog,
                &out,
            ),
            false,
        )
        .unwrap();
        assert_eq!((s.written, s.skipped), (r.n, 0), "{s:?}");
        // The field outside the stamps holds events too: the cutout must not pick them up.
        assert!(s.events_kept > 0 && s.events_read == s.events_kept);
        let ds = Dataset::load(&out).unwrap();
        let sky = ds.sky.as_ref().expect("id, ra, dec written");
        let mut image = vec![0u16; IMAGE_LEN];
        let mut total = 0u64;
        for i in 0..r.n {
            assert_eq!(sky.id[i], format!("MOCK-{i:06}"));
            let t = r.sim.observe(i as u64, &mut image);
            let got = ds.image(i);
            let diff = got.iter().zip(&image).filter(|(a, b)| a != b).count();
            assert_eq!(
                diff, 0,
                "cluster {i}: {diff} pixels differ from the simulator's cube"
            );
            assert_eq!(ds.redshift[i], t.redshift as f32);
            assert_eq!(ds.exposure(i), Some(r.sim.instrument.exposure_s));
            total += image.iter().map(|&v| u64::from(v)).sum::<u64>();
        }
        assert!(total > 1000, "the cubes hold photons ({total})");
        assert!(s.events_kept as u64 > total, "and the field holds more");
    }
}

/// The rows of a `predict` CSV (the `#` header names the dataset and the date, so it differs).
fn catalogue_rows(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn predict_on_the_cutout_equals_predict_on_the_simulators_own_dataset() {
    let r = rehearsal(12);
    let cut = r.dir.join("cut.npz");
    run(
        &options(
            vec![r.events.clone()],
            vec![r.expmap.clone()],
            &r.cat_fits,
            &cut,
        ),
        false,
    )
    .unwrap();
    let direct = r.dir.join("direct.npz");
    trainer::generate::generate_npz_with(&r.sim, r.n, &direct, false, Some(&r.sky)).unwrap();
    let blob = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/edge/model-int8.bin");
    let mut rows = Vec::new();
    for (data, name) in [(&cut, "cut.csv"), (&direct, "direct.csv")] {
        let out = r.dir.join(name);
        let o = trainer::predict::PredictOptions {
            model: blob.clone(),
            data: data.clone(),
            out: out.clone(),
            model_dtype: None,
            batch: 64,
            progress: false,
            command: "test".into(),
        };
        trainer::predict::predict(&o).unwrap();
        rows.push(catalogue_rows(&out));
    }
    assert_eq!(
        rows[0].len(),
        r.n + 1,
        "a header line and a row per cluster"
    );
    // Same ids, positions, redshifts, exposures, masses, sigmas and flags, to the last digit.
    assert_eq!(rows[0], rows[1]);
    assert!(rows[0][1].starts_with("MOCK-000000,"), "{}", rows[0][1]);
}

#[test]
fn a_cluster_is_taken_from_the_tile_where_it_lies_furthest_from_the_edge() {
    let r = rehearsal(4);
    let ds = Dataset::load(&{
        let out = r.dir.join("a.npz");
        run(
            &options(
                vec![r.events.clone()],
                vec![r.expmap.clone()],
                &r.cat_csv,
                &out,
            ),
            false,
        )
        .unwrap();
        out
    })
    .unwrap();
    let sky = ds.sky.clone().unwrap();
    // A second exposure map over the same events, shifted east by 0.3 deg: each
    // cluster sits at a different distance from its edge than in the first.
    let p = small_tile();
    let shifted = r.dir.join("shifted.expmap.fits");
    let npix = (p.size_deg * 3600.0 / p.expmap_pixel_arcsec).round() as usize;
    let ra_b = p.ra_deg + 0.3 / p.dec_deg.to_radians().cos();
    write_expmap(
        &shifted,
        ra_b,
        p.dec_deg,
        p.expmap_pixel_arcsec,
        npix,
        1600.0,
    )
    .unwrap();
    let a_map = Projection::cutout(p.ra_deg, p.dec_deg, p.expmap_pixel_arcsec, npix).unwrap();
    let b_map = Projection::cutout(ra_b, p.dec_deg, p.expmap_pixel_arcsec, npix).unwrap();
    let margin = |m: &Projection, i: usize| {
        let (x, y) = m.to_pixel(sky.ra[i], sky.dec[i]).unwrap();
        let n = npix as f64;
        x.min(n - x).min(y.min(n - y)) * p.expmap_pixel_arcsec
    };
    // Extra catalogue rows: one outside both maps, one on tile A's edge.
    let csv = r.dir.join("cat2.csv");
    let mut text = std::fs::read_to_string(&r.cat_csv).unwrap();
    text.push_str(&format!("FAR,{},{},0.3\n", p.ra_deg + 5.0, p.dec_deg));
    text.push_str(&format!(
        "EDGE,{},{},0.3\n",
        p.ra_deg,
        p.dec_deg - p.size_deg / 2.0 + 0.01
    ));
    std::fs::write(&csv, text).unwrap();
    let out = r.dir.join("two.npz");
    let s = run(
        &options(
            vec![r.events.clone(), r.events.clone()],
            vec![r.expmap.clone(), shifted.clone()],
            &csv,
            &out,
        ),
        false,
    )
    .unwrap();
    assert_eq!((s.written, s.skipped), (4, 2));
    let two = Dataset::load(&out).unwrap();
    let tiles = two.meta.as_ref().unwrap()["cutout"]["tile_of_cluster"].clone();
    let m = &two.sky.as_ref().unwrap().edge_margin_arcsec;
    for i in 0..4 {
        let (ma, mb) = (margin(&a_map, i), margin(&b_map, i));
        let want = if mb > ma { 1 } else { 0 };
        assert_eq!(tiles[i], want, "cluster {i}: margins A {ma:.0}, B {mb:.0}");
        assert!((f64::from(m[i]) - ma.max(mb)).abs() < 1e-2);
        // Same events either way: the same cube.
        assert_eq!(two.image(i), ds.image(i));
    }
    let skipped = std::fs::read_to_string(default_skipped(&out)).unwrap();
    assert!(
        skipped.contains("FAR") && skipped.contains("outside every tile"),
        "{skipped}"
    );
    assert!(
        skipped.contains("EDGE") && skipped.contains("too close to the edge"),
        "{skipped}"
    );
}

fn err_of(o: &CutoutOptions) -> String {
    let e = run(o, false).expect_err("must be refused");
    let msg = format!("{e:#}");
    assert!(!o.out.exists(), "nothing written on error: {msg}");
    msg
}

fn write_events(path: &Path, ra: &[f64], dec: &[f64], pi: &[f32], pi_unit: &str) {
    let mut t = Table::new("EVENTS");
    t.push(Column::f64("RA", ra.to_vec()).unit("deg"));
    t.push(Column::f64("DEC", dec.to_vec()).unit("deg"));
    t.push(Column::f32("PI", pi.to_vec()).unit(pi_unit));
    t.keys.push(Key::str("TELESCOP", "test"));
    t.write(path).unwrap();
}

#[test]
fn bad_event_lists_are_refused_with_file_hdu_column_and_row() {
    let r = rehearsal(2);
    let out = r.dir.join("bad.npz");
    let opts =
        |ev: &Path, cat: &Path| options(vec![ev.to_path_buf()], vec![r.expmap.clone()], cat, &out);
    let p = small_tile();

    // PI in keV.
    let kev = r.dir.join("kev.fits");
    let n = 200;
    let ra = vec![p.ra_deg; n];
    let dec = vec![p.dec_deg; n];
    let pi: Vec<f32> = (0..n).map(|k| 0.3 + k as f32 * 0.01).collect();
    write_events(&kev, &ra, &dec, &pi, "");
    let msg = err_of(&opts(&kev, &r.cat_csv));
    assert!(
        msg.contains("kev.fits") && msg.contains("PI") && msg.contains("keV"),
        "{msg}"
    );
    write_events(&kev, &ra, &dec, &pi, "keV");
    let msg = err_of(&opts(&kev, &r.cat_csv));
    assert!(msg.contains("TUNIT is keV"), "{msg}");

    // RA out of range in row 3.
    let bad_ra = r.dir.join("ra.fits");
    let mut ra2 = ra.clone();
    ra2[2] = 361.0;
    let pi_ev: Vec<f32> = pi.iter().map(|v| v * 1000.0).collect();
    write_events(&bad_ra, &ra2, &dec, &pi_ev, "eV");
    let msg = err_of(&opts(&bad_ra, &r.cat_csv));
    assert!(
        msg.contains("ra.fits")
            && msg.contains("HDU EVENTS")
            && msg.contains("row 3")
            && msg.contains("361"),
        "{msg}"
    );

    // No EVENTS HDU; a missing column.
    let msg = err_of(&opts(&r.expmap, &r.cat_csv));
    assert!(msg.contains("no HDU named EVENTS"), "{msg}");
    let nodec = r.dir.join("nodec.fits");
    let mut t = Table::new("EVENTS");
    t.push(Column::f64("RA", ra.clone()));
    t.push(Column::f32("PI", pi_ev.clone()));
    t.write(&nodec).unwrap();
    let msg = err_of(&opts(&nodec, &r.cat_csv));
    assert!(
        msg.contains("nodec.fits") && msg.contains("no column DEC") && msg.contains("RA, PI"),
        "{msg}"
    );

    // Truncated and corrupted files: an error naming the file, no panic.
    let bytes = std::fs::read(&r.events).unwrap();
    let cut = r.dir.join("cut.fits");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = err_of(&opts(&cut, &r.cat_csv));
    assert!(msg.contains("cut.fits"), "{msg}");
    let junk = r.dir.join("junk.fits");
    std::fs::write(&junk, b"SIMPLE  = this is not a FITS file").unwrap();
    let msg = err_of(&opts(&junk, &r.cat_csv));
    assert!(msg.contains("junk.fits") && msg.contains("FITS"), "{msg}");
    // A mismatched exposure map: no overlap with the events.
    let far = r.dir.join("far.expmap.fits");
    write_expmap(&far, 10.0, -40.0, 20.0, 100, 1600.0).unwrap();
    let msg = err_of(&options(
        vec![r.events.clone()],
        vec![far],
        &r.cat_csv,
        &out,
    ));
    assert!(msg.contains("does not overlap"), "{msg}");
    // Leftover temporaries: none.
    let partial = std::fs::read_dir(&r.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".partial")
        })
        .count();
    assert_eq!(partial, 0);
}

#[test]
fn bad_catalogues_are_refused_or_their_rows_skipped_with_the_reason() {
    let r = rehearsal(3);
    let out = r.dir.join("c.npz");
    let with = |text: &str, name: &str| {
        let p = r.dir.join(name);
        std::fs::write(&p, text).unwrap();
        options(vec![r.events.clone()], vec![r.expmap.clone()], &p, &out)
    };
    let head = "NAME,RA,DEC,BEST_Z\n";
    let (ra, dec) = (TileParams::default().ra_deg, TileParams::default().dec_deg);
    let msg = err_of(&with("ID,RA,DEC,Z\nA,150,2,0.3\n", "cols.csv"));
    assert!(
        msg.contains("cols.csv")
            && msg.contains("no column NAME")
            && msg.contains("ID, RA, DEC, Z"),
        "{msg}"
    );
    let msg = err_of(&with(
        &format!("{head}A,{ra},{dec},0.3\nB,{ra},{dec},0.3\nA,{ra},{dec},0.2\n"),
        "dup.csv",
    ));
    assert!(
        msg.contains("dup.csv") && msg.contains("row 3") && msg.contains("row 1"),
        "{msg}"
    );
    let msg = err_of(&with(&format!("{head}A,{ra},95,0.3\n"), "dec.csv"));
    assert!(
        msg.contains("column DEC row 1") && msg.contains("95"),
        "{msg}"
    );
    // A NaN redshift: that cluster is skipped with the column and row named, the rest written.
    let o = with(
        &format!("{head}A,{ra},{dec},nan\nB,{ra},{dec},0.4\n"),
        "nan.csv",
    );
    let s = run(&o, false).unwrap();
    assert_eq!((s.written, s.skipped), (1, 1));
    let skipped = std::fs::read_to_string(&o.skipped).unwrap();
    assert!(
        skipped.contains("A,1,") && skipped.contains("BEST_Z") && skipped.contains("row 1"),
        "{skipped}"
    );
    // Every cluster skipped: an error, and no dataset.
    std::fs::remove_file(&out).unwrap();
    let msg = err_of(&with(&format!("{head}A,10,-40,0.3\n"), "none.csv"));
    assert!(
        msg.contains("no cluster") && msg.contains("skipped"),
        "{msg}"
    );
}
