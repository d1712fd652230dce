//! The runtime's on-board event binner (`runtime::events::Binner`) against the host's
//! `trainer cutout` on the same events: a simulated sky tile (`simulate_tile`, the DR1
//! layout) is cut out by the host (`survey::cutout::cutout`: f64 WCS positions, `floor`,
//! the band of each f64 `PI` against the edges in eV) and, independently, each of its events
//! is projected onto each cluster's stamp and pushed through the binner as a device would
//! receive it (f32 stamp pixel coordinates, f32 `PI` in eV). The binner's u16 cube must be
//! the host's cube bit for bit, its u8 cube the host's clipped at 255 (flagged where it
//! clips), and the generated `edge` model (int8, f32, f16) must give the same estimate on
//! the binner's cubes, u8 and u16 (and int8's `infer_in_place` on the u8 cube), as on the
//! host's.

use std::path::Path;

use models::edge;
use runtime::events::{Binner, Outcome, Stats, narrow};
use runtime::model::Flags;
use trainer::sim::{NPIX, SimConfig, Simulator};
use trainer::survey::catalog::{Catalog, Columns};
use trainer::survey::cutout::{Grid, Tile, cutout};
use trainer::survey::fits::FitsIn;
use trainer::survey::sky::Projection;
use trainer::survey::tile::{TileParams, sibling_paths, simulate_tile};

/// The columns of a tile's `EVENTS` table the binner needs, as stored.
struct Events {
    ra: Vec<f64>,
    dec: Vec<f64>,
    pi: Vec<f64>,
}

fn read_events(path: &Path) -> Events {
    let mut f = FitsIn::open(path).unwrap();
    let t = f.table(Some("EVENTS")).unwrap();
    let (ra, dec, pi) = (
        f.col_f64(&t, "RA").unwrap(),
        f.col_f64(&t, "DEC").unwrap(),
        f.col_f64(&t, "PI").unwrap(),
    );
    // The host also selects on pattern and flags (a device's event pipeline would do it
    // before binning); a simulated tile holds only valid, unflagged events, so both see the
    // same events.
    assert!(f.col_i64(&t, "PAT_TYP").unwrap().iter().all(|&p| p == 1));
    assert!(f.col_i64(&t, "FLAG").unwrap().iter().all(|&p| p == 0));
    Events { ra, dec, pi }
}

/// Every event of the tile through a binner for the stamp `stamp`: the position projected
/// in f64 and narrowed to f32 towards minus infinity (so its pixel is the f64 one), `PI` as
/// the f32 the file stores. Also returns how many of the binned events would have changed
/// pixel (or left the stamp) with a plain `as f32` (rounding to nearest).
fn bin<N: runtime::Count>(ev: &Events, stamp: &Projection, cube: &mut [N]) -> (Stats, usize) {
    let mut b = Binner::new(cube).unwrap();
    let mut moved = 0;
    for k in 0..ev.ra.len() {
        let Some((x, y)) = stamp.to_pixel(ev.ra[k], ev.dec[k]) else {
            continue; // the far hemisphere: no pixel, for the host either
        };
        let pi = ev.pi[k] as f32;
        assert_eq!(f64::from(pi), ev.pi[k], "PI is stored as f32");
        let outcome = b.push(narrow(x), narrow(y), pi).unwrap();
        let near = |v: f64| f64::from(v as f32).floor() != v.floor();
        if matches!(outcome, Outcome::Binned | Outcome::Saturated) && (near(x) || near(y)) {
            moved += 1;
        }
    }
    (b.stats(), moved)
}

fn bits(e: runtime::Estimate) -> [u32; 3] {
    [
        e.log_mass.to_bits(),
        e.sigma.to_bits(),
        u32::from(e.flags.0),
    ]
}

#[test]
fn the_event_binner_equals_the_host_cutout_and_infers_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Simulator::new(SimConfig {
        seed: 23,
        ..SimConfig::default()
    });
    let n = 10;
    let events_path = tmp.path().join("tile.fits");
    let pb = indicatif::ProgressBar::hidden();
    let params = TileParams {
        size_deg: 1.4,
        ..TileParams::default()
    };
    simulate_tile(&sim, n, &params, &events_path, &pb).unwrap();
    let (expmap, cat_fits, _) = sibling_paths(&events_path);

    // The host.
    let edges_kev = sim.config.spectral.band_edges_kev.to_vec();
    let grid = Grid {
        pixel_arcsec: sim.config.instrument.pixel_arcsec,
        edges_kev: edges_kev.clone(),
    };
    let tiles = [Tile::read(&events_path, &expmap, &edges_kev).unwrap()];
    let catalog = Catalog::read(&cat_fits, &Columns::default()).unwrap();
    let (cuts, skipped) = cutout(&tiles, &catalog, &grid, &pb).unwrap();
    assert_eq!((cuts.len(), skipped.len()), (n, 0));

    // The binner's band edges are the host's, in eV.
    let host_ev = trainer::survey::events::edges_ev(&edges_kev);
    assert_eq!(
        runtime::events::BAND_EDGES_EV.map(f64::from).to_vec(),
        host_ev
    );

    let ev = read_events(&events_path);
    let f32m = edge::f32::Model::new(&models::blobs::EDGE_F32.0).unwrap();
    let f16m = edge::f16::Model::new(&models::blobs::EDGE_F16.0).unwrap();
    let i8m = edge::int8::Model::new(&models::blobs::EDGE_INT8.0).unwrap();
    let mut af = [0.0f32; edge::ARENA_LEN];
    let mut ai = [0i8; edge::ARENA_LEN];
    let mut sf = edge::f32::Scratch::new();
    let mut si = edge::int8::Scratch::new();
    let (mut total, mut moved_total, mut clipped) = (0u64, 0, 0);
    for c in &cuts {
        let stamp = Projection::cutout(c.entry.ra, c.entry.dec, grid.pixel_arcsec, NPIX).unwrap();
        let mut c16 = vec![0u16; runtime::CUBE_LEN];
        let (s16, moved) = bin(&ev, &stamp, &mut c16);
        let id = &c.entry.id;
        let diff = c16.iter().zip(&c.counts).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{id}: {diff} cells differ from the host's cube");
        let sum: u64 = c.counts.iter().map(|&v| u64::from(v)).sum();
        assert_eq!(u64::from(s16.binned), sum, "{id}");
        assert_eq!(s16.saturated, c.saturated, "{id}");
        // Everything else of the tile is off this stamp; the mock's energies are all in band.
        assert_eq!(s16.outside_bands, 0, "{id}");
        assert_eq!(s16.invalid, 0, "{id}");
        assert!(
            s16.outside_stamp > 0,
            "{id}: the field around the stamp holds events"
        );
        total += sum;
        moved_total += moved;

        let mut c8 = vec![0u8; runtime::CUBE_LEN];
        let (s8, _) = bin(&ev, &stamp, &mut c8);
        let over: u64 = c
            .counts
            .iter()
            .map(|&v| u64::from(v.saturating_sub(255)))
            .sum();
        for (k, (&a, &b)) in c8.iter().zip(&c.counts).enumerate() {
            assert_eq!(u16::from(a), b.min(255), "{id}: cell {k}");
        }
        assert_eq!(u64::from(s8.saturated), over, "{id}");
        assert_eq!(u64::from(s8.binned) + over, sum, "{id}");

        let z = [c.entry.z as f32];
        let host = [
            bits(i8m.infer(&c.counts, &z, &mut ai, &mut si).unwrap()),
            bits(f32m.infer(&c.counts, &z, &mut af, &mut sf).unwrap()),
            bits(f16m.infer(&c.counts, &z, &mut af, &mut sf).unwrap()),
        ];
        let on16 = [
            bits(i8m.infer(&c16, &z, &mut ai, &mut si).unwrap()),
            bits(f32m.infer(&c16, &z, &mut af, &mut sf).unwrap()),
            bits(f16m.infer(&c16, &z, &mut af, &mut sf).unwrap()),
        ];
        let on8 = [
            bits(i8m.infer(&c8, &z, &mut ai, &mut si).unwrap()),
            bits(f32m.infer(&c8, &z, &mut af, &mut sf).unwrap()),
            bits(f16m.infer(&c8, &z, &mut af, &mut sf).unwrap()),
        ];
        assert_eq!(on16, host, "{id}: u16 cube");
        // The int8 model on the u8 cube it consumes, the activations inside the cube.
        let mut consumed: Box<[u8; edge::INPUT_LEN]> = c8.clone().try_into().unwrap();
        let in_place = bits(i8m.infer_in_place(&mut consumed, &z, &mut si).unwrap());
        assert_eq!(in_place, on8[0], "{id}: in place");
        // And on the u16 cube, the activations inside its bytes.
        let mut consumed: Box<[u16; edge::INPUT_LEN]> = c16.clone().try_into().unwrap();
        let in_place = bits(i8m.infer_in_place(&mut consumed, &z, &mut si).unwrap());
        assert_eq!(in_place, on16[0], "{id}: u16 in place");
        if c.counts.iter().all(|&v| v < 255) {
            assert_eq!(on8, host, "{id}: u8 cube");
        } else {
            clipped += 1;
            for e in on8 {
                assert!(Flags(e[2] as u16).contains(Flags::SATURATED), "{id}");
            }
        }
    }
    assert!(total > 1000, "the cubes hold photons ({total})");
    println!(
        "{n} clusters, {} events in the tile, {total} in the stamps; {moved_total} binned events would change pixel with `as f32` instead of `narrow`; {clipped} u8 cubes clipped at 255",
        ev.ra.len()
    );
}
