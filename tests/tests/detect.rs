//! The device's detection check (`runtime::detect`, behind `Flags::FEW_COUNTS`) against
//! the host's definition of a detected cluster (`trainer::baseline`: the count-rate
//! baseline's net 0.5-2 keV aperture counts, f64 pixel distances by `hypot`, the aperture
//! from the host's tabulated cosmology), on simulated clusters at every depth; and the
//! committed `edge` model, whose generated `infer` sets the flag exactly for the clusters
//! the host calls undetected.

use arch::load::Observation;
use models::{blobs, edge};
use runtime::detect::{self, Detection};
use runtime::model::Flags;
use trainer::baseline::{CountRateParams, aperture_counts};
use trainer::data::Dataset;
use trainer::sim::instrument::Depth;

fn mocks(depth: Depth, seed: u64, n: usize) -> Dataset {
    let sim = tests::simulator(seed, |c| c.depth = depth);
    trainer::generate::generate_dataset(&sim, n)
}

fn detection_of(ds: &Dataset) -> Detection {
    let meta = ds
        .meta
        .as_ref()
        .expect("simulated data record their configuration");
    Observation::of_meta(meta)
        .expect("conventions in the metadata")
        .detection(50, 50)
        .expect("a usable detection check")
}

/// The device's criterion is the host's: same aperture, limits, background annulus and
/// threshold.
#[test]
fn the_device_criterion_is_the_hosts() {
    let p = CountRateParams::default();
    let same = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-6 * b.abs();
    assert!(same(detect::APERTURE_KPC, p.aperture_kpc));
    assert!(same(
        detect::APERTURE_LIMITS_ARCMIN[0],
        p.aperture_limits_arcmin.0
    ));
    assert!(same(
        detect::APERTURE_LIMITS_ARCMIN[1],
        p.aperture_limits_arcmin.1
    ));
    assert!(same(
        detect::BACKGROUND_INNER_ARCMIN,
        p.background_inner_arcmin
    ));
    assert!(same(detect::MIN_NET_COUNTS, p.detection_counts));
    // The device's f32 cosmology against the host's f64 table.
    let host = trainer::sim::cosmology::Cosmology::new(Default::default());
    for z in [0.05f32, 0.3, 0.7, 1.3, 2.0] {
        let d = Detection::erosita(50, 50, 10.0, [2, 6]).angular_diameter_distance_mpc(z);
        let h = host.angular_diameter_distance(f64::from(z));
        assert!(
            (f64::from(d) / h - 1.0).abs() < 2e-6,
            "z = {z}: {d} vs {h} Mpc"
        );
    }
}

/// Net counts of every cluster equal the host's (up to the f32 rounding of the device's
/// background scaling: the same pixels and counts), and the detected / undetected split is
/// the same, at eRASS1, eRASS:8 and
/// pointed depth (from nearly all undetected to nearly all detected).
#[test]
fn net_counts_and_detections_match_the_host() {
    let p = CountRateParams::default();
    for (depth, seed) in [
        (Depth::Erass1, 31),
        (Depth::Erass8, 32),
        (Depth::Pointed, 33),
    ] {
        let ds = mocks(depth, seed, 300);
        let d = detection_of(&ds);
        assert_eq!(d.bands, [2, 6], "0.5-2 keV are bands 2 to 5");
        let host = aperture_counts(&ds, &p);
        let (mut detected, mut worst) = (0, 0.0f64);
        for (i, &h) in host.iter().enumerate() {
            let dev = f64::from(d.net_counts(ds.image(i), ds.redshift[i]).unwrap());
            worst = worst.max((dev - h).abs() / h.abs().max(1.0));
            let flagged = d.flags(ds.image(i), ds.redshift[i]).unwrap() == Flags::FEW_COUNTS;
            assert_eq!(
                flagged,
                h < p.detection_counts,
                "{depth:?} cluster {i}: device {dev}, host {h} net counts"
            );
            detected += usize::from(!flagged);
        }
        // f32 background scaling on the device, f64 on the host.
        assert!(
            worst < 1e-5,
            "{depth:?}: net counts differ by {worst:e} (relative)"
        );
        eprintln!("{depth:?}: {detected} of 300 detected");
        // The check discriminates at each depth (neither all nor none, except that nearly
        // every cluster is detected in 20 ks).
        assert!(detected > 0, "{depth:?}: no cluster detected");
        if depth != Depth::Pointed {
            assert!(detected < 300, "{depth:?}: every cluster detected");
        }
    }
}

/// The committed `edge` model knows its conventions (`BAND_EDGES_EV`, `DETECTION` from its
/// calibration sample's simulation configuration), and its `infer` flags `few_counts`
/// exactly where the host's baseline says "undetected", in every dtype; the other flags
/// are unaffected.
#[test]
fn generated_infer_flags_undetected_clusters() {
    assert_eq!(
        edge::BAND_EDGES_EV,
        Some(runtime::events::BAND_EDGES_EV),
        "the model's band edges are the binner's"
    );
    let det = edge::DETECTION.expect("the committed edge export knows its conventions");
    let ds = mocks(Depth::Erass4, 34, 60);
    assert_eq!(det, detection_of(&ds));
    let host = aperture_counts(&ds, &CountRateParams::default());
    let i8m = edge::int8::Model::new(&blobs::EDGE_INT8.0).unwrap();
    let f32m = edge::f32::Model::new(&blobs::EDGE_F32.0).unwrap();
    let mut a8 = vec![0i8; edge::ARENA_LEN];
    let mut af = vec![0f32; edge::ARENA_LEN];
    let mut s8 = Box::new(edge::int8::Scratch::new());
    let mut sf = Box::new(edge::f32::Scratch::new());
    let (mut few, mut not_few) = (0, 0);
    for (i, &h) in host.iter().enumerate() {
        let z = [ds.redshift[i]];
        let counts = ds.image(i);
        let e8 = i8m
            .infer(counts, &z, (&mut a8[..]).try_into().unwrap(), &mut s8)
            .unwrap();
        let ef = f32m
            .infer(counts, &z, (&mut af[..]).try_into().unwrap(), &mut sf)
            .unwrap();
        let want = h < 50.0;
        for (what, e) in [("int8", e8), ("f32", ef)] {
            assert_eq!(
                e.flags.contains(Flags::FEW_COUNTS),
                want,
                "{what}, cluster {i}: host net counts {h}"
            );
            assert!(!e.flags.contains(Flags::EMPTY_CUBE));
        }
        if want { few += 1 } else { not_few += 1 }
    }
    assert!(few > 0 && not_few > 0, "{few} flagged, {not_few} not");
}
