//! The dataset contract: round trips, channels-last input, clear errors that name
//! the file for every kind of bad input, and atomic writes.

use npyz::WriterBuilder;
use std::path::Path;
use tests::simulator;
use trainer::data::{Dataset, NpzOut};
use trainer::generate::generate_dataset;
use trainer::sim::{IMAGE_LEN, NPIX, spectrum::NBANDS};

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(f))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn small() -> Dataset {
    generate_dataset(&simulator(21, |_| {}), 6)
}

fn load_err(path: &Path) -> String {
    let e = Dataset::load(path).expect_err("bad input must be rejected");
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error must name the file: {msg}"
    );
    msg
}

#[test]
fn npz_round_trip_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.npz");
    let ds = small();
    ds.save(&p).unwrap();
    let back = Dataset::load(&p).unwrap();
    assert_eq!(back.images, ds.images);
    assert_eq!(back.redshift, ds.redshift);
    assert_eq!(back.log_mass, ds.log_mass);
    assert_eq!(back.truth, ds.truth);
    assert_eq!(back.meta, ds.meta);
}

/// A subset keeps exactly the chosen clusters, in order, with their truth.
#[test]
fn subset_picks_clusters_in_order() {
    let ds = small();
    let sub = ds.subset(&[4, 1]);
    assert_eq!(sub.image(0), ds.image(4));
    assert_eq!(sub.image(1), ds.image(1));
    assert_eq!(sub.redshift, vec![ds.redshift[4], ds.redshift[1]]);
    let (t, s) = (ds.truth.as_ref().unwrap(), sub.truth.as_ref().unwrap());
    assert_eq!(s.log_lum, vec![t.log_lum[4], t.log_lum[1]]);
    assert_eq!(s.cool_core, vec![t.cool_core[4], t.cool_core[1]]);
}

/// A Keras user's channels-last cube, stored as float32 .npy files in a directory,
/// loads to exactly the same band-major counts.
#[test]
fn channels_last_float_npy_directory_equals_channels_first() {
    let ds = small();
    let n = ds.len();
    let mut last = vec![0f32; n * IMAGE_LEN];
    for i in 0..n {
        for b in 0..NBANDS {
            for y in 0..NPIX {
                for x in 0..NPIX {
                    last[i * IMAGE_LEN + (y * NPIX + x) * NBANDS + b] =
                        f32::from(ds.images[i * IMAGE_LEN + b * NPIX * NPIX + y * NPIX + x]);
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write_npy(
        &dir.path().join("images.npy"),
        &[n as u64, NPIX as u64, NPIX as u64, NBANDS as u64],
        &last,
    );
    write_npy(
        &dir.path().join("redshift.npy"),
        &[n as u64],
        &ds.redshift
            .iter()
            .map(|&z| f64::from(z))
            .collect::<Vec<_>>(),
    );
    write_npy(
        &dir.path().join("log_mass.npy"),
        &[n as u64],
        ds.log_mass.as_ref().unwrap(),
    );
    for path in [dir.path().to_path_buf(), dir.path().join("images.npy")] {
        let back = Dataset::load(&path).unwrap();
        assert_eq!(back.images, ds.images);
        assert_eq!(back.redshift, ds.redshift);
        assert_eq!(back.log_mass, ds.log_mass);
    }
}

fn npy_dir(images: (&[u64], &[f32]), redshift: &[f32]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_npy(&dir.path().join("images.npy"), images.0, images.1);
    write_npy(
        &dir.path().join("redshift.npy"),
        &[redshift.len() as u64],
        redshift,
    );
    dir
}

#[test]
fn wrong_image_shape_is_named() {
    let dir = npy_dir(
        (&[2, 10, 48, 48], &vec![0.0; 2 * 10 * 48 * 48]),
        &[0.1, 0.2],
    );
    let msg = load_err(dir.path());
    assert!(
        msg.contains("images") && msg.contains("[2, 10, 48, 48]") && msg.contains("channels-last"),
        "{msg}"
    );
}

#[test]
fn nan_negative_and_fractional_counts_are_rejected_with_their_index() {
    let n = 2;
    let mut img = vec![0f32; n * IMAGE_LEN];
    img[777] = f32::NAN;
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, 0.2]);
    let msg = load_err(dir.path());
    assert!(msg.contains("non-finite") && msg.contains("777"), "{msg}");

    img[777] = -3.0;
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, 0.2]);
    let msg = load_err(dir.path());
    assert!(msg.contains("negative") && msg.contains("777"), "{msg}");

    img[777] = 0.5;
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, 0.2]);
    assert!(load_err(dir.path()).contains("whole numbers"));

    img[777] = 70_000.0;
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, 0.2]);
    assert!(load_err(dir.path()).contains("65535"));
}

#[test]
fn bad_redshifts_are_rejected() {
    let img = vec![0f32; 2 * IMAGE_LEN];
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, f32::NAN]);
    assert!(load_err(dir.path()).contains("redshift"));
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, -0.5]);
    assert!(load_err(dir.path()).contains("between 0 and 20"));
    let dir = npy_dir((&[2, 10, 50, 50], &img), &[0.1, 0.2, 0.3]);
    let msg = load_err(dir.path());
    assert!(
        msg.contains("3 entries") && msg.contains("`images` has 2"),
        "{msg}"
    );
}

#[test]
fn missing_key_lists_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    write_npy(
        &dir.path().join("images.npy"),
        &[1, 10, 50, 50],
        &vec![0u16; IMAGE_LEN],
    );
    let msg = load_err(dir.path());
    assert!(
        msg.contains("missing array `redshift`") && msg.contains("images"),
        "{msg}"
    );
}

#[test]
fn truncated_and_garbage_files_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.npz");
    small().save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    for keep in [bytes.len() / 2, bytes.len() - 10, 100] {
        let t = dir.path().join(format!("cut{keep}.npz"));
        std::fs::write(&t, &bytes[..keep]).unwrap();
        let msg = load_err(&t);
        assert!(
            msg.contains("truncated or corrupted") || msg.contains("truncated"),
            "{msg}"
        );
    }
    let g = dir.path().join("garbage.npz");
    std::fs::write(&g, b"this is not a zip archive at all").unwrap();
    assert!(load_err(&g).contains("not a readable NumPy file"));
    let missing = dir.path().join("nope.npz");
    assert!(load_err(&missing).contains("cannot read"));
    // A corrupted byte inside the stored images array is caught by the zip CRC.
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 3;
    flipped[mid] ^= 0xff;
    let f = dir.path().join("flipped.npz");
    std::fs::write(&f, &flipped).unwrap();
    let msg = load_err(&f);
    assert!(
        msg.contains("corrupted") && msg.contains("checksum"),
        "{msg}"
    );
}

/// An interrupted write leaves an existing dataset untouched and no debris behind.
#[test]
fn interrupted_write_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.npz");
    let ds = small();
    ds.save(&p).unwrap();
    let before = std::fs::read(&p).unwrap();
    {
        let mut w = NpzOut::create(&p).unwrap();
        let mut img = w.images(ds.len()).unwrap();
        img.write(&ds.images[..IMAGE_LEN]).unwrap();
        // dropped here without finishing or committing, like a killed process
    }
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

/// An NPY header as numpy lays it out (magic, version 1.0, padded dict), then `data`.
fn raw_npy(path: &Path, header: &str, data: &[u8]) {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b.extend(data);
    std::fs::write(path, b).unwrap();
}

/// A 128-byte header nesting 22 brackets hung the reader for over a minute; a header
/// declaring 4e7 clusters (2 TB) or 2^64-1 values aborted the process in allocation.
/// Each is now a prompt error that names the file.
#[test]
fn forged_npy_headers_are_refused_promptly_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let z = dir.path().join("redshift.npy");
    write_npy(&z, &[1], &[0.3f32]);
    let m = dir.path().join("log_mass.npy");
    write_npy(&m, &[1], &[14.0f32]);
    let images = dir.path().join("images.npy");
    let cases = [
        (
            format!(
                "{{'descr': {}'<u2'{}, 'fortran_order': False, 'shape': (1, 10, 50, 50), }}",
                "[".repeat(22),
                "]".repeat(22)
            ),
            "nests brackets",
        ),
        (
            "{'descr': '<u2', 'fortran_order': False, 'shape': (40000000, 10, 50, 50), }".into(),
            "bytes of data follow",
        ),
        (
            "{'descr': '<u2', 'fortran_order': False, 'shape': (18446744073709551615, 10, 50, 50), }"
                .into(),
            "overflows",
        ),
    ];
    for (header, want) in cases {
        raw_npy(&images, &header, &[0u8; 64]);
        let msg = load_err(&images);
        assert!(msg.contains(want) && msg.contains("images.npy"), "{msg}");
    }
    // The same forged entry inside an NPZ archive.
    let npz = dir.path().join("forged.npz");
    {
        let f = std::fs::File::create(&npz).unwrap();
        let mut zip = npyz::zip::ZipWriter::new(f);
        zip.start_file("images.npy", npyz::zip::write::FileOptions::default())
            .unwrap();
        raw_npy(
            &dir.path().join("entry.npy"),
            "{'descr': '<u2', 'fortran_order': False, 'shape': (40000000, 10, 50, 50), }",
            &[0u8; 64],
        );
        std::io::Write::write_all(
            &mut zip,
            &std::fs::read(dir.path().join("entry.npy")).unwrap(),
        )
        .unwrap();
        zip.finish().unwrap();
    }
    let msg = load_err(&npz);
    assert!(msg.contains("bytes of data follow"), "{msg}");
}
