//! `codegen inspect` on blob files: a header with a dtype byte no runtime knows is an error
//! naming the file and the byte (issue 18, item 9), not a table printed with exit 0.

use codegen::blob::{Tensor, write};
use runtime::blob::{Dtype, blob_crc};
use std::process::Command;

fn inspect(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_codegen"))
        .arg("inspect")
        .arg(path)
        .output()
        .expect("running codegen inspect")
}

#[test]
fn an_unknown_dtype_byte_is_an_error_naming_file_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        Dtype::Int8,
        7,
        &[Tensor::F32(vec![1.0; 3]), Tensor::I8(vec![1, 2, 3])],
    );
    let ok = dir.path().join("good.bin");
    std::fs::write(&ok, &good).unwrap();
    let out = inspect(&ok);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("dtype int8"));

    // The same blob with dtype byte 0x2a, checksum sealed again: only the dtype is wrong.
    let mut bad = good.clone();
    bad[6] = 0x2a;
    let crc = blob_crc(&bad);
    bad[24..28].copy_from_slice(&crc.to_le_bytes());
    let path = dir.path().join("unknown-dtype.bin");
    std::fs::write(&path, &bad).unwrap();
    let out = inspect(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0 for dtype byte 42: {out:?}");
    assert!(
        err.contains("unknown-dtype.bin") && err.contains("42"),
        "the error should name the file and the byte: {err}"
    );
}
