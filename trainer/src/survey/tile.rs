//! `trainer simulate --events`: the mocks as a sky tile in the eROSITA DR1 layout, so
//! a user can rehearse the whole path (events -> `cutout` -> `predict`) and the tests
//! can check `cutout` against the simulator exactly.
//!
//! The tile is a square of `size_deg` on a side in a gnomonic projection centred on
//! (`ra_deg`, `dec_deg`). Cluster `i` of the dataset (the simulator's index `i`, the
//! same cube `trainer simulate` makes) sits at a jittered grid point at least
//! `edge_margin_deg` inside the tile; grid points are `spacing_deg` apart, more than a
//! stamp's diagonal, so stamps never overlap. What the tile holds:
//!
//! - **inside each cluster's 50 x 50 stamp** (the cutout grid of [`Projection::cutout`]
//!   at the cluster's position): exactly the photons the simulator paints into that
//!   cluster's cube (cluster emission, the field and central AGN of that cube, its sky and
//!   particle background), each converted from its continuous pixel position to RA/Dec.
//!   A background photon, which the simulator places by pixel only, gets a uniform
//!   position inside its pixel;
//! - **outside every stamp**: a background field of the same sky and particle
//!   background per unit area, and field AGN drawn from the same logN-logS with the same
//!   PSF. Field photons that land inside a stamp are dropped (the stamp has its own).
//!
//! So the cutout of a cluster from the tile equals the simulator's cube of that cluster,
//! count for count (the round-trip test). Event attributes that the cube does not record
//! come from a separate random stream, so they do not change the cubes: the energy `PI`
//! (eV, log-uniform inside the photon's band, i.e. a photon index of 1 across the band),
//! `TIME` (uniform over the exposure), `TM_NR` (uniform over the seven cameras),
//! `PAT_TYP = 1`, `FLAG = 0`.
//!
//! Written next to the events file `NAME.fits`: `NAME.expmap.fits` (a flat exposure map
//! of the dataset's exposure over the tile, seconds, `RA---TAN`), `NAME.catalog.fits`
//! and `NAME.catalog.csv` (columns `NAME`, `RA`, `DEC`, `BEST_Z`, as the eRASS1 cluster
//! catalogue names them), and the dataset itself (`--out`) with `id`, `ra`, `dec`.

use super::sky::Projection;
use crate::data::SkyColumns;
use crate::fits_table::{Column, FitsOut, Key, Table};
use crate::sim::{NPIX, PhotonSink, Simulator};
use anyhow::{Result, bail};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Geometry of a simulated tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TileParams {
    /// Tile centre RA, deg.
    pub ra_deg: f64,
    /// Tile centre Dec, deg.
    pub dec_deg: f64,
    /// Side of the square tile, deg (DR1 sky tiles: 3.6).
    pub size_deg: f64,
    /// Distance between cluster grid points, deg (more than a stamp's diagonal, 0.098 deg).
    pub spacing_deg: f64,
    /// No cluster centre closer than this to the tile's edge, deg.
    pub edge_margin_deg: f64,
    /// Pixel of the exposure map, arcsec (DR1: 4; coarser keeps the file small).
    pub expmap_pixel_arcsec: f64,
    /// Start of the observation, s (mission time; eSASS counts from MJDREF 51543.875).
    pub tstart_s: f64,
}

impl Default for TileParams {
    fn default() -> Self {
        Self {
            ra_deg: 150.0,
            dec_deg: 2.2,
            size_deg: 3.6,
            spacing_deg: 0.2,
            edge_margin_deg: 0.15,
            expmap_pixel_arcsec: 20.0,
            tstart_s: 6.4e8,
        }
    }
}

/// One photon on the sky.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Event {
    time: f64,
    ra: f64,
    dec: f64,
    pi: f32,
    tm: u8,
}

/// Draw the attributes of a photon of `band`.
fn attributes(
    rng: &mut ChaCha8Rng,
    edges_ev: &[f64],
    band: usize,
    t0: f64,
    texp: f64,
) -> (f32, f64, u8) {
    let (lo, hi) = (edges_ev[band], edges_ev[band + 1]);
    let e = lo * (hi / lo).powf(rng.random::<f64>());
    let mut pi = e as f32;
    // Keep the f32 value inside [lo, hi) so it bins back into its band.
    while f64::from(pi) >= hi {
        pi = f32::from_bits(pi.to_bits() - 1);
    }
    while f64::from(pi) < lo {
        pi = f32::from_bits(pi.to_bits() + 1);
    }
    let time = t0 + rng.random::<f64>() * texp;
    (pi, time, rng.random_range(1..=7u8))
}

/// Collects a cluster's photons that land on its stamp, as events.
struct StampSink<'a> {
    stamp: &'a Projection,
    rng: ChaCha8Rng,
    edges_ev: &'a [f64],
    t0: f64,
    texp: f64,
    out: Vec<Event>,
}

impl StampSink<'_> {
    fn push(&mut self, band: usize, x: f64, y: f64) {
        let (pi, time, tm) = attributes(&mut self.rng, self.edges_ev, band, self.t0, self.texp);
        if let Some((ra, dec)) = self.stamp.to_sky(x, y) {
            self.out.push(Event {
                time,
                ra,
                dec,
                pi,
                tm,
            });
        }
    }
}

impl PhotonSink for StampSink<'_> {
    fn photon(&mut self, band: usize, x: f64, y: f64) {
        if x >= 0.0 && y >= 0.0 && x < NPIX as f64 && y < NPIX as f64 {
            self.push(band, x, y);
        }
    }
    fn background(&mut self, band: usize, p: usize) {
        // Away from the pixel's borders by 1e-6 pixel, so float rounding in the
        // projection round trip cannot move it to a neighbour.
        let u = 1e-6 + (1.0 - 2e-6) * self.rng.random::<f64>();
        let v = 1e-6 + (1.0 - 2e-6) * self.rng.random::<f64>();
        self.push(band, (p % NPIX) as f64 + u, (p / NPIX) as f64 + v);
    }
}

/// What a simulated tile holds.
#[derive(Debug, Clone, Serialize)]
pub struct TileSummary {
    /// Events file.
    pub events: PathBuf,
    /// Exposure map file.
    pub expmap: PathBuf,
    /// Catalogue (FITS).
    pub catalog_fits: PathBuf,
    /// Catalogue (CSV).
    pub catalog_csv: PathBuf,
    /// Events in cluster stamps.
    pub stamp_events: usize,
    /// Events of the background field and field AGN outside the stamps.
    pub field_events: usize,
    /// Field AGN drawn.
    pub field_agn: usize,
}

/// The sibling files of an events file `NAME.fits`: `(expmap, catalog.fits, catalog.csv)`.
pub fn sibling_paths(events: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = events.with_extension("");
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
    (
        with(".expmap.fits"),
        with(".catalog.fits"),
        with(".catalog.csv"),
    )
}

/// Cluster positions: `n` jittered grid points of the tile, in a seeded order.
pub fn layout(sim: &Simulator, n: usize, p: &TileParams) -> Result<(Projection, SkyColumns)> {
    let pix = sim.instrument.params.pixel_arcsec;
    let stamp_diag_deg = NPIX as f64 * pix * 2f64.sqrt() / 3600.0;
    if !(p.spacing_deg > stamp_diag_deg) {
        bail!(
            "tile spacing {} deg must exceed a stamp's diagonal, {stamp_diag_deg:.3} deg",
            p.spacing_deg
        );
    }
    if !(p.size_deg > 0.0 && p.size_deg <= 20.0 && p.expmap_pixel_arcsec > 0.0) {
        bail!("tile size {} deg must be in (0, 20]", p.size_deg);
    }
    let npix_map = (p.size_deg * 3600.0 / p.expmap_pixel_arcsec).round() as usize;
    let map = Projection::cutout(p.ra_deg, p.dec_deg, p.expmap_pixel_arcsec, npix_map)?;
    let usable = p.size_deg - 2.0 * p.edge_margin_deg;
    let k = if usable > 0.0 {
        (usable / p.spacing_deg).floor() as usize + 1
    } else {
        0
    };
    if n > k * k {
        bail!(
            "a {} deg tile holds at most {} clusters {} deg apart (asked for {n}); lower --n or raise --tile-size",
            p.size_deg,
            k * k,
            p.spacing_deg
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sim.config.seed);
    rng.set_stream(u64::MAX - 1);
    let mut cells: Vec<usize> = (0..k * k).collect();
    cells.shuffle(&mut rng);
    let jitter = (p.spacing_deg - stamp_diag_deg) / 2.0 * 0.9;
    let c = npix_map as f64 / 2.0;
    let deg_to_pix = 3600.0 / p.expmap_pixel_arcsec;
    let mut sky = SkyColumns::default();
    for (i, &cell) in cells.iter().take(n).enumerate() {
        let (a, b) = ((cell % k) as f64, (cell / k) as f64);
        let off = |v: f64| (v - (k as f64 - 1.0) / 2.0) * p.spacing_deg;
        let dx = off(a) + rng.random_range(-jitter..=jitter);
        let dy = off(b) + rng.random_range(-jitter..=jitter);
        let (ra, dec) = map
            .to_sky(c + dx * deg_to_pix, c + dy * deg_to_pix)
            .expect("tile plane point");
        sky.id.push(format!("MOCK-{i:06}"));
        sky.ra.push(ra);
        sky.dec.push(dec);
    }
    Ok((map, sky))
}

/// Simulate the tile of the first `n` clusters of `sim` into `events` (and siblings).
pub fn simulate_tile(
    sim: &Simulator,
    n: usize,
    p: &TileParams,
    events_path: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<(SkyColumns, Vec<f64>, TileSummary)> {
    if sim.exposure_varies() {
        let (lo, hi) = sim.exposure_bounds();
        anyhow::bail!(
            "a simulated tile has one exposure map; per-cluster exposures ({lo:.0}-{hi:.0} s) apply to cutout datasets only"
        );
    }
    let (map, sky) = layout(sim, n, p)?;
    let pix = sim.instrument.params.pixel_arcsec;
    let edges = super::events::edges_ev(&sim.config.spectral.band_edges_kev);
    let texp = sim.instrument.exposure_s;
    let stamps: Vec<Projection> = (0..n)
        .map(|i| Projection::cutout(sky.ra[i], sky.dec[i], pix, NPIX))
        .collect::<Result<_>>()?;

    // Cluster stamps, each from its own streams: the simulator's (index i) and an
    // attribute stream that the cube never sees.
    let mut redshift = vec![0.0; n];
    let per_cluster: Vec<(Vec<Event>, f64)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(sim.config.seed ^ 0xE7E7_0000_0000_0001);
            rng.set_stream(i as u64);
            let mut sink = StampSink {
                stamp: &stamps[i],
                rng,
                edges_ev: &edges,
                t0: p.tstart_s,
                texp,
                out: Vec::new(),
            };
            let truth = sim.observe_into(i as u64, &mut sink);
            progress.inc(1);
            (sink.out, truth.redshift)
        })
        .collect();
    let mut events = Vec::new();
    for (i, (ev, z)) in per_cluster.into_iter().enumerate() {
        events.extend(ev);
        redshift[i] = z;
    }
    let stamp_events = events.len();

    // The field outside the stamps.
    let (field, field_agn) = field_events(sim, p, &map, &stamps, &sky, &edges);
    let field_count = field.len();
    events.extend(field);
    events.sort_by(|a, b| a.time.total_cmp(&b.time));

    write_events(events_path, sim, p, &map, &events)?;
    let (expmap, cat_fits, cat_csv) = sibling_paths(events_path);
    write_expmap(
        &expmap,
        p.ra_deg,
        p.dec_deg,
        p.expmap_pixel_arcsec,
        map.size.0,
        texp,
    )?;
    let z: Vec<f64> = redshift.iter().map(|&z| f64::from(z as f32)).collect();
    write_catalog(&cat_fits, &cat_csv, &sky, &z)?;
    Ok((
        sky,
        z,
        TileSummary {
            events: events_path.to_path_buf(),
            expmap,
            catalog_fits: cat_fits,
            catalog_csv: cat_csv,
            stamp_events,
            field_events: field_count,
            field_agn,
        },
    ))
}

/// Background and field AGN over the tile, outside every stamp.
fn field_events(
    sim: &Simulator,
    p: &TileParams,
    map: &Projection,
    stamps: &[Projection],
    sky: &SkyColumns,
    edges: &[f64],
) -> (Vec<Event>, usize) {
    let inst = &sim.instrument;
    let mut rng = ChaCha8Rng::seed_from_u64(sim.config.seed);
    rng.set_stream(u64::MAX);
    let nmap = map.size.0 as f64;
    let map_pix = p.expmap_pixel_arcsec;
    let sim_pix = inst.params.pixel_arcsec;
    let texp = inst.exposure_s;
    // Stamps bucketed by the map cell of their centre, for the inside-a-stamp test.
    let cell = (p.spacing_deg * 3600.0 / map_pix).max(1.0);
    let mut buckets: std::collections::HashMap<(i64, i64), Vec<usize>> = Default::default();
    for i in 0..stamps.len() {
        let (x, y) = map.to_pixel(sky.ra[i], sky.dec[i]).expect("on the tile");
        buckets
            .entry(((x / cell).floor() as i64, (y / cell).floor() as i64))
            .or_default()
            .push(i);
    }
    let in_stamp = |ra: f64, dec: f64, x: f64, y: f64| {
        let (bx, by) = ((x / cell).floor() as i64, (y / cell).floor() as i64);
        (bx - 1..=bx + 1).any(|a| {
            (by - 1..=by + 1).any(|b| {
                buckets
                    .get(&(a, b))
                    .is_some_and(|v| v.iter().any(|&i| stamps[i].pixel_index(ra, dec).is_some()))
            })
        })
    };
    let mut out = Vec::new();
    let place = |rng: &mut ChaCha8Rng, band: usize, x: f64, y: f64, out: &mut Vec<Event>| {
        if !(x >= 0.0 && y >= 0.0 && x < nmap && y < nmap) {
            return;
        }
        let Some((ra, dec)) = map.to_sky(x, y) else {
            return;
        };
        let (pi, time, tm) = attributes(rng, edges, band, p.tstart_s, texp);
        if !in_stamp(ra, dec, x, y) {
            out.push(Event {
                time,
                ra,
                dec,
                pi,
                tm,
            });
        }
    };
    // Sky + particle background: the cube's level per sim pixel, scaled to the tile.
    let area_ratio = (nmap * map_pix / sim_pix).powi(2);
    for (b, mu_pix) in inst.bkg_per_pixel.iter().enumerate() {
        let mu = mu_pix * area_ratio;
        let k = if mu > 0.0 {
            Poisson::new(mu).map_or(0, |d| d.sample(&mut rng) as u64)
        } else {
            0
        };
        for _ in 0..k {
            let (x, y) = (rng.random::<f64>() * nmap, rng.random::<f64>() * nmap);
            place(&mut rng, b, x, y, &mut out);
        }
    }
    // Field AGN: the cube's density per deg^2 over the tile, same flux law and PSF.
    let area_deg2 = (nmap * map_pix / 3600.0).powi(2);
    let p_params = &inst.params;
    let mean = crate::sim::instrument::Instrument::agn_cumulative(p_params, p_params.agn_s_min)
        * area_deg2;
    let n_agn = Poisson::new(mean).map_or(0, |d| d.sample(&mut rng) as usize);
    for _ in 0..n_agn {
        let flux = inst.agn_flux(rng.random());
        let (x0, y0) = (rng.random::<f64>() * nmap, rng.random::<f64>() * nmap);
        for (b, rate) in inst.agn_rate_per_flux.iter().enumerate() {
            let mu = flux * rate * texp;
            let k = if mu > 0.0 {
                Poisson::new(mu).map_or(0, |d| d.sample(&mut rng) as u64)
            } else {
                0
            };
            for _ in 0..k {
                let r = inst.psf_radius_arcsec(rng.random()) / map_pix;
                let (s, c) = rng.random_range(0.0..std::f64::consts::TAU).sin_cos();
                place(&mut rng, b, x0 + r * c, y0 + r * s, &mut out);
            }
        }
    }
    (out, n_agn)
}

fn common_keys(sim: &Simulator, p: &TileParams) -> Vec<Key> {
    vec![
        Key::str("TELESCOP", "eROSITA"),
        Key::str("INSTRUME", "merged"),
        Key::str("ORIGIN", "cluster-mass mock"),
        Key::str(
            "CREATOR",
            concat!("trainer ", env!("CARGO_PKG_VERSION"), " simulate --events"),
        ),
        Key::str("DSTYPE", "EventList"),
        Key::f64("RA_CEN", p.ra_deg),
        Key::f64("DEC_CEN", p.dec_deg),
        Key::f64("EQUINOX", 2000.0),
        Key::str("RADESYS", "ICRS"),
        Key::f64("MJDREF", 51543.875),
        Key::str("TIMEUNIT", "s"),
        Key::f64("TSTART", p.tstart_s),
        Key::f64("TSTOP", p.tstart_s + sim.instrument.exposure_s),
        Key::i64("SIMSEED", sim.config.seed as i64),
    ]
}

fn write_events(
    path: &Path,
    sim: &Simulator,
    p: &TileParams,
    map: &Projection,
    ev: &[Event],
) -> Result<()> {
    // Sky pixels of 0.05 arcsec in the tile's tangent plane, 0 at the tile centre.
    let c = map.size.0 as f64 / 2.0;
    let scale = p.expmap_pixel_arcsec / 0.05;
    let (x, y): (Vec<f64>, Vec<f64>) = ev
        .iter()
        .map(|e| {
            let (u, v) = map.to_pixel(e.ra, e.dec).expect("on the tile");
            ((u - c) * scale, (v - c) * scale)
        })
        .unzip();
    let mut f = FitsOut::create(path, None)?;
    let keys = common_keys(sim, p);
    f.primary_keys(&keys)?;
    let mut events = Table::new("EVENTS");
    events.push(Column::f64("TIME", ev.iter().map(|e| e.time).collect()).unit("s"));
    events.push(Column::f64("RA", ev.iter().map(|e| e.ra).collect()).unit("deg"));
    events.push(Column::f64("DEC", ev.iter().map(|e| e.dec).collect()).unit("deg"));
    events.push(Column::f64("X", x).unit("pixel"));
    events.push(Column::f64("Y", y).unit("pixel"));
    events.push(Column::f32("PI", ev.iter().map(|e| e.pi).collect()).unit("eV"));
    events.push(Column::i16("PAT_TYP", vec![1; ev.len()]));
    events.push(Column::i32("FLAG", vec![0; ev.len()]));
    events.push(Column::u8("TM_NR", ev.iter().map(|e| e.tm).collect()));
    events.keys = keys;
    events.keys.extend([
        Key::f64("EXPOSURE", sim.instrument.exposure_s),
        Key::str("TCTYP4", "RA---TAN"),
        Key::f64("TCRVL4", p.ra_deg),
        Key::f64("TCDLT4", -0.05 / 3600.0),
        Key::f64("TCRPX4", 0.0),
        Key::str("TCUNI4", "deg"),
        Key::str("TCTYP5", "DEC--TAN"),
        Key::f64("TCRVL5", p.dec_deg),
        Key::f64("TCDLT5", 0.05 / 3600.0),
        Key::f64("TCRPX5", 0.0),
        Key::str("TCUNI5", "deg"),
    ]);
    f.table(&events)?;
    let mut gti = Table::new("GTI");
    gti.push(Column::f64("START", vec![p.tstart_s]).unit("s"));
    gti.push(Column::f64("STOP", vec![p.tstart_s + sim.instrument.exposure_s]).unit("s"));
    f.table(&gti)?;
    f.commit()
}

/// Write a flat exposure map of `exposure` seconds, `npix` x `npix` pixels of
/// `pixel_arcsec` in a gnomonic projection centred on (`ra`, `dec`).
pub fn write_expmap(
    path: &Path,
    ra: f64,
    dec: f64,
    pixel_arcsec: f64,
    npix: usize,
    exposure: f64,
) -> Result<()> {
    let mut f = FitsOut::create(path, Some((npix, npix)))?;
    f.primary_image(&vec![exposure as f32; npix * npix])?;
    let k = Projection::tan_keywords(ra, dec, pixel_arcsec, npix);
    let mut keys = Vec::new();
    for (name, v) in &k {
        if name.starts_with("NAXIS") {
            continue;
        }
        keys.push(match v {
            serde_json::Value::String(s) => Key::str(name, s),
            other => Key::f64(name, other.as_f64().expect("numeric keyword")),
        });
    }
    keys.push(Key::str("BUNIT", "s"));
    keys.push(Key::str("DSTYPE", "ExposureMap"));
    f.primary_keys(&keys)?;
    f.commit()
}

fn write_catalog(fits: &Path, csv_path: &Path, sky: &SkyColumns, z: &[f64]) -> Result<()> {
    let mut t = Table::new("CATALOG");
    t.push(Column::string("NAME", sky.id.clone()));
    t.push(Column::f64("RA", sky.ra.clone()).unit("deg"));
    t.push(Column::f64("DEC", sky.dec.clone()).unit("deg"));
    t.push(Column::f64("BEST_Z", z.to_vec()));
    t.write(fits)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["NAME", "RA", "DEC", "BEST_Z"])?;
    for (((id, ra), dec), z) in sky.id.iter().zip(&sky.ra).zip(&sky.dec).zip(z) {
        // `{}` of an f64 prints the shortest text that reads back to the same bits.
        w.write_record([
            id.clone(),
            format!("{ra}"),
            format!("{dec}"),
            format!("{z}"),
        ])?;
    }
    crate::fsutil::write_atomic(csv_path, &w.into_inner()?)
}
